//! A WGSL file from `shaders/` as a kernel burn can launch on its own buffers (burn's template
//! kernels): the source with its workgroup size filled in, keyed by the file's name so that
//! each shader is compiled once per device.

use burn::backend::wgpu::{KernelSource, SourceTemplate};
use burn_cubecl::cubecl::prelude::KernelId;

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
