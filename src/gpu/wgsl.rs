//! Launching the WGSL files of `shaders/` on burn's own buffers (burn's template kernels): the
//! source with its workgroup size filled in, keyed by the file's name so that each shader is
//! compiled once per device, and the few steps every launch shares.

use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::tensor::{DType, Shape};
use burn_cubecl::cubecl::prelude::KernelId;
use burn_cubecl::cubecl::server::{Handle, KernelArguments};
use burn_cubecl::cubecl::{CubeCount, CubeDim};

/// wgpu's limit on workgroups along one axis of a dispatch.
const MAX_WORKGROUPS_PER_AXIS: u32 = 65_535;

pub struct WgslShader {
    /// The file's name, which tells the compiled kernels apart.
    pub name: &'static str,
    pub source: &'static str,
    /// Fills `{{ workgroup_size }}` in the source.
    pub workgroup_size: u32,
}

impl KernelSource for WgslShader {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(self.source).register("workgroup_size", self.workgroup_size.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.name, self.workgroup_size))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Queues `shader` on the device of `on`, with its buffers bound in order.
pub fn launch(
    on: &CubeTensor,
    shader: WgslShader,
    dim: CubeDim,
    count: CubeCount,
    buffers: Vec<Handle>,
) {
    on.client.launch(
        Box::new(SourceKernel::new(shader, dim)),
        count,
        KernelArguments::new().with_buffers(buffers.into_iter().map(Handle::binding).collect()),
    );
}

/// Workgroups of `workgroup` invocations for `invocations` in all, spread over a second grid
/// axis when one is not enough; the shaders index across both.
pub fn flat_grid(invocations: usize, workgroup: u32) -> CubeCount {
    let workgroups = word(invocations.div_ceil(workgroup as usize));
    CubeCount::Static(
        workgroups.clamp(1, MAX_WORKGROUPS_PER_AXIS),
        workgroups.div_ceil(MAX_WORKGROUPS_PER_AXIS).max(1),
        1,
    )
}

/// A new float32 tensor of `shape` on the device of `like`, for a shader to fill.
pub fn new_output(like: &CubeTensor, shape: Shape) -> CubeTensor {
    let buffer = like.client.empty(shape.num_elements() * DType::F32.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        buffer,
        DType::F32,
    )
}

/// A size or index as the `u32` the shaders read.
pub fn word(value: usize) -> u32 {
    u32::try_from(value).expect("tensor dimensions fit in u32")
}
