//! Cutting the region patches out of the feature map: MediaPipe's `TransformTensorBilinear` as a
//! burn backend extension, so that each backend runs it on tensors it already holds.
//!
//! - wgpu: `shaders/transform_tensor_bilinear.wgsl`, launched on the tensors' own buffers
//!   through burn's template kernels; the feature map never leaves the GPU.
//! - CPU (flex): `custom_ops::transform_tensor_bilinear`, the shader's CPU twin.
//!
//! burn's `#[backend_extension]` routes the call to the backend the tensors live on, and its
//! Fusion support queues it with the fused operations around it.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, into_contiguous};
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_cubecl::cubecl::server::KernelArguments;
use burn_cubecl::cubecl::{CubeCount, CubeDim};

use crate::gpu::wgsl::WgslShader;
use crate::models::attention::custom_ops::{Matrix4, transform_tensor_bilinear};

const SHADER: &str = include_str!("../../../shaders/transform_tensor_bilinear.wgsl");
const WORKGROUP: u32 = 64;
/// wgpu's limit on workgroups along one axis of a dispatch.
const MAX_WORKGROUPS_PER_AXIS: u32 = 65_535;

/// `[N, C, H, W]` feature maps and one matrix per item -> `[N, C, patch_height, patch_width]`.
pub fn sample_patches(
    feature_map: Tensor<4>,
    matrices: &[Matrix4],
    (patch_width, patch_height): (usize, usize),
) -> Tensor<4> {
    let matrices = Tensor::<2>::from_data(
        TensorData::new(matrices.concat(), [matrices.len(), 16]),
        &feature_map.device(),
    );
    Tensor::from_dispatch(<Dispatch as PatchSampling>::transform_tensor_bilinear(
        feature_map.into_dispatch(),
        matrices.into_dispatch(),
        patch_width,
        patch_height,
    ))
}

#[backend_extension(Cube, Flex, Fusion)]
pub trait PatchSampling: Backend {
    /// `features` `[N, C, H, W]`, `matrices` `[N, 16]` -> `[N, C, patch_height, patch_width]`.
    #[fusion(meta = patch_spec)]
    fn transform_tensor_bilinear(
        features: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        patch_width: usize,
        patch_height: usize,
    ) -> FloatTensor<Self>;
}

/// The output's shape and type, for Fusion to queue the operation before it runs.
fn patch_spec(
    features: &TensorSpec,
    _matrices: &TensorSpec,
    patch_width: &usize,
    patch_height: &usize,
) -> TensorSpec {
    let dims = features.shape.dims::<4>();
    TensorSpec::new(
        Shape::new([dims[0], dims[1], *patch_height, *patch_width]),
        features.dtype,
    )
}

impl PatchSampling for Flex {
    fn transform_tensor_bilinear(
        features: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        patch_width: usize,
        patch_height: usize,
    ) -> FloatTensor<Self> {
        let device = features.device();
        let [items, channels, height, width] = features.shape().dims::<4>();
        let read = |tensor| {
            pollster::block_on(Flex::float_into_data(tensor))
                .expect("a CPU tensor reads back")
                .try_into_vec::<f32>()
                .expect("float32")
        };
        let (features, matrices) = (read(features), read(matrices));
        let per_item = channels * height * width;
        let patches: Vec<f32> = (0..items)
            .flat_map(|n| {
                let matrix: Matrix4 = matrices[16 * n..16 * n + 16].try_into().expect("16 values");
                transform_tensor_bilinear(
                    &features[n * per_item..(n + 1) * per_item],
                    [channels, height, width],
                    &matrix,
                    (patch_width, patch_height),
                )
            })
            .collect();
        Flex::float_from_data(
            TensorData::new(patches, [items, channels, patch_height, patch_width]),
            &device,
        )
    }
}

impl PatchSampling for CubeBackend {
    fn transform_tensor_bilinear(
        features: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        patch_width: usize,
        patch_height: usize,
    ) -> FloatTensor<Self> {
        assert_eq!(
            features.dtype,
            DType::F32,
            "the shader reads float32 feature maps"
        );
        let features = into_contiguous(features);
        let matrices = into_contiguous(matrices);
        let [items, channels, height, width] = features.meta.shape().dims::<4>();
        let shape = Shape::new([items, channels, patch_height, patch_width]);
        let client = features.client.clone();
        let buffer = client.empty(shape.num_elements() * DType::F32.size());
        let patches = CubeTensor::new_contiguous(
            client.clone(),
            features.device.clone(),
            shape.clone(),
            buffer,
            DType::F32,
        );
        let info: Vec<u32> = [items, channels, height, width, patch_height, patch_width]
            .iter()
            .map(|&d| u32::try_from(d).expect("tensor dimensions fit in u32"))
            .collect();
        let info = client.create_from_slice(bytemuck::cast_slice(&info));
        let workgroups = u32::try_from(shape.num_elements().div_ceil(WORKGROUP as usize))
            .expect("fewer than 2^32 workgroups");
        let count = CubeCount::Static(
            workgroups.min(MAX_WORKGROUPS_PER_AXIS),
            workgroups.div_ceil(MAX_WORKGROUPS_PER_AXIS),
            1,
        );
        client.launch(
            Box::new(SourceKernel::new(
                WgslShader {
                    name: "transform_tensor_bilinear.wgsl",
                    source: SHADER,
                    workgroup_size: WORKGROUP,
                },
                CubeDim::new_1d(WORKGROUP),
            )),
            count,
            KernelArguments::new().with_buffers(vec![
                features.handle.binding(),
                matrices.handle.binding(),
                patches.handle.clone().binding(),
                info.binding(),
            ]),
        );
        patches
    }
}
