//! The attention model's three custom operators as a burn backend extension, so that each
//! backend runs them on the tensors it already holds and the whole forward pass stays queued on
//! the device until its answers are read, once, at the end.
//!
//! - wgpu: the WGSL shaders in `shaders/` (`landmarks_to_transform_matrix.wgsl`,
//!   `transform_tensor_bilinear.wgsl`, `transform_landmarks.wgsl`), launched on the tensors'
//!   own buffers through burn's template kernels.
//! - CPU (flex): their twins in `custom_ops.rs`, which is what `tests/shaders.rs` holds the
//!   shaders to.
//!
//! burn's `#[backend_extension]` routes each call to the backend the tensors live on, and its
//! Fusion support queues the call with the fused operations around it.

use std::borrow::Cow;

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor, into_contiguous};
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_cubecl::cubecl::CubeDim;
use burn_cubecl::cubecl::server::Handle;

use crate::gpu::wgsl::{WgslShader, flat_grid, launch, new_output, word};
use crate::models::attention::custom_ops::{
    Matrix4, RegionTransform, landmarks_to_transform_matrix, transform_landmarks,
    transform_tensor_bilinear,
};

const WORKGROUP: u32 = 64;

/// `Landmarks2TransformMatrix`: meshes `[N, points * 3]` in crop pixels, times `mesh_scale`
/// into feature-map pixels -> the region's matrices `[N, 16]`.
pub fn transform_matrices(mesh: Tensor<2>, region: &RegionTransform, mesh_scale: f32) -> Tensor<2> {
    Tensor::from_dispatch(
        <Dispatch as AttentionKernels>::landmarks_to_transform_matrix(
            mesh.into_dispatch(),
            region.clone(),
            mesh_scale,
        ),
    )
}

/// `TransformTensorBilinear`: feature maps `[N, C, H, W]`, matrices `[N, 16]` ->
/// `[N, C, patch_height, patch_width]`.
pub fn sample_patches(
    feature_map: Tensor<4>,
    matrices: Tensor<2>,
    (patch_width, patch_height): (usize, usize),
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as AttentionKernels>::transform_tensor_bilinear(
        feature_map.into_dispatch(),
        matrices.into_dispatch(),
        patch_width,
        patch_height,
    ))
}

/// `TransformLandmarks`: points `[N, K * 2]` in patch units, matrices `[N, 16]` scaled
/// elementwise by `matrix_scale` -> points `[N, K * 2]` in crop pixels.
pub fn transform_points(
    points: Tensor<2>,
    matrices: Tensor<2>,
    matrix_scale: Matrix4,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as AttentionKernels>::transform_landmarks(
        points.into_dispatch(),
        matrices.into_dispatch(),
        matrix_scale,
    ))
}

#[backend_extension(Cube, Flex, Fusion)]
pub trait AttentionKernels: Backend {
    #[fusion(meta = matrices_spec)]
    fn landmarks_to_transform_matrix(
        mesh: FloatTensor<Self>,
        region: RegionTransform,
        mesh_scale: f32,
    ) -> FloatTensor<Self>;

    #[fusion(meta = patches_spec)]
    fn transform_tensor_bilinear(
        features: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        patch_width: usize,
        patch_height: usize,
    ) -> FloatTensor<Self>;

    #[fusion(meta = points_spec)]
    fn transform_landmarks(
        points: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        matrix_scale: Matrix4,
    ) -> FloatTensor<Self>;
}

// Output shapes and types, for Fusion to queue each operation before it runs.

fn matrices_spec(mesh: &TensorSpec, _region: &RegionTransform, _scale: &f32) -> TensorSpec {
    TensorSpec::new(Shape::new([mesh.shape.dims::<2>()[0], 16]), mesh.dtype)
}

fn patches_spec(
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

fn points_spec(points: &TensorSpec, _matrices: &TensorSpec, _scale: &Matrix4) -> TensorSpec {
    points.clone()
}

/// The CPU backend runs the twins on the tensors' values.
impl AttentionKernels for Flex {
    fn landmarks_to_transform_matrix(
        mesh: FloatTensor<Self>,
        region: RegionTransform,
        mesh_scale: f32,
    ) -> FloatTensor<Self> {
        let device = mesh.device();
        let [faces, per_face] = mesh.shape().dims::<2>();
        let mesh = read(mesh);
        let matrices: Vec<f32> = mesh
            .chunks_exact(per_face)
            .flat_map(|face| {
                let scaled: Vec<f32> = face.iter().map(|v| v * mesh_scale).collect();
                landmarks_to_transform_matrix(&scaled, &region)
            })
            .collect();
        Flex::float_from_data(TensorData::new(matrices, [faces, 16]), &device)
    }

    fn transform_tensor_bilinear(
        features: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        patch_width: usize,
        patch_height: usize,
    ) -> FloatTensor<Self> {
        let device = features.device();
        let [faces, channels, height, width] = features.shape().dims::<4>();
        let matrices = read(matrices);
        let features = borrow_or_read(&features);
        let per_face = channels * height * width;
        // Each face's patch appended whole: collected through `flat_map`, the values went
        // one at a time, which cost more than sampling them.
        let mut patches = Vec::with_capacity(faces * channels * patch_height * patch_width);
        for (map, matrix) in features
            .chunks_exact(per_face)
            .zip(matrices.chunks_exact(16))
        {
            patches.extend(transform_tensor_bilinear(
                map,
                [channels, height, width],
                &matrix.try_into().expect("16 values"),
                (patch_width, patch_height),
            ));
        }
        Flex::float_from_data(
            TensorData::new(patches, [faces, channels, patch_height, patch_width]),
            &device,
        )
    }

    fn transform_landmarks(
        points: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        matrix_scale: Matrix4,
    ) -> FloatTensor<Self> {
        let device = points.device();
        let shape = points.shape();
        let [_, per_face] = shape.dims::<2>();
        let (points, matrices) = (read(points), read(matrices));
        let mapped: Vec<f32> = points
            .chunks_exact(per_face)
            .zip(matrices.chunks_exact(16))
            .flat_map(|(points, matrix)| {
                let scaled: Matrix4 = std::array::from_fn(|i| matrix[i] * matrix_scale[i]);
                transform_landmarks(points, &scaled)
            })
            .collect();
        Flex::float_from_data(TensorData::new(mapped, shape), &device)
    }
}

/// A CPU tensor's values in place where they lie contiguous: the feature map is shared by
/// the three regions, so reading it back would copy its 295 KB for each of them.
fn borrow_or_read(tensor: &FloatTensor<Flex>) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(read(tensor.clone())),
    }
}

fn read(tensor: FloatTensor<Flex>) -> Vec<f32> {
    pollster::block_on(Flex::float_into_data(tensor))
        .expect("a CPU tensor reads back")
        .try_into_vec::<f32>()
        .expect("float32")
}

/// The GPU runs the shaders.
impl AttentionKernels for CubeBackend {
    fn landmarks_to_transform_matrix(
        mesh: FloatTensor<Self>,
        region: RegionTransform,
        mesh_scale: f32,
    ) -> FloatTensor<Self> {
        let mesh = float32(mesh);
        let [faces, per_face] = mesh.meta.shape().dims::<2>();
        let matrices = new_output(&mesh, Shape::new([faces, 16]));
        let client = &mesh.client;
        let subset: Vec<u32> = region.subset.iter().map(|&i| word(i)).collect();
        let params = [
            mesh_scale,
            region.target_rotation_radians,
            region.scale_x,
            region.scale_y,
        ];
        let info = [
            word(faces),
            word(per_face),
            word(subset.len()),
            word(region.left_rotation_index),
            word(region.right_rotation_index),
            word(region.output_width),
            word(region.output_height),
        ];
        run(
            &mesh,
            "landmarks_to_transform_matrix.wgsl",
            include_str!("../../../shaders/landmarks_to_transform_matrix.wgsl"),
            faces,
            vec![
                mesh.handle.clone(),
                client.create_from_slice(bytemuck::cast_slice(&subset)),
                client.create_from_slice(bytemuck::cast_slice(&params)),
                matrices.handle.clone(),
                client.create_from_slice(bytemuck::cast_slice(&info)),
            ],
        );
        matrices
    }

    fn transform_tensor_bilinear(
        features: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        patch_width: usize,
        patch_height: usize,
    ) -> FloatTensor<Self> {
        let (features, matrices) = (float32(features), float32(matrices));
        let [faces, channels, height, width] = features.meta.shape().dims::<4>();
        let patches = new_output(
            &features,
            Shape::new([faces, channels, patch_height, patch_width]),
        );
        let info = [faces, channels, height, width, patch_height, patch_width].map(word);
        run(
            &features,
            "transform_tensor_bilinear.wgsl",
            include_str!("../../../shaders/transform_tensor_bilinear.wgsl"),
            faces * channels * patch_height * patch_width,
            vec![
                features.handle.clone(),
                matrices.handle.clone(),
                patches.handle.clone(),
                features
                    .client
                    .create_from_slice(bytemuck::cast_slice(&info)),
            ],
        );
        patches
    }

    fn transform_landmarks(
        points: FloatTensor<Self>,
        matrices: FloatTensor<Self>,
        matrix_scale: Matrix4,
    ) -> FloatTensor<Self> {
        let (points, matrices) = (float32(points), float32(matrices));
        let [faces, per_face] = points.meta.shape().dims::<2>();
        let mapped = new_output(&points, Shape::new([faces, per_face]));
        let info = [word(faces), word(per_face / 2)];
        let client = &points.client;
        run(
            &points,
            "transform_landmarks.wgsl",
            include_str!("../../../shaders/transform_landmarks.wgsl"),
            faces * per_face / 2,
            vec![
                points.handle.clone(),
                matrices.handle.clone(),
                client.create_from_slice(bytemuck::cast_slice(&matrix_scale)),
                mapped.handle.clone(),
                client.create_from_slice(bytemuck::cast_slice(&info)),
            ],
        );
        mapped
    }
}

/// The shaders read contiguous float32 tensors.
fn float32(tensor: CubeTensor) -> CubeTensor {
    assert_eq!(
        tensor.dtype,
        DType::F32,
        "the attention shaders read float32"
    );
    into_contiguous(tensor)
}

/// Queues one of the attention shaders, one invocation per item of `invocations`.
fn run(
    on: &CubeTensor,
    name: &'static str,
    source: &'static str,
    invocations: usize,
    buffers: Vec<Handle>,
) {
    let shader = WgslShader {
        name,
        source,
        workgroup_size: WORKGROUP,
    };
    let count = flat_grid(invocations, WORKGROUP);
    launch(on, shader, CubeDim::new_1d(WORKGROUP), count, buffers);
}
