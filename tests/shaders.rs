//! Every shader equals its CPU twin, on whatever adapter wgpu finds (llvmpipe in CI).

mod common;

use burn::tensor::{Tensor, TensorData};
use face_service::bench::footage::carphone_frames;
use face_service::device::ComputeDevice;
use face_service::models::ModelKind;
use face_service::models::attention::custom_ops::{
    Matrix4, RegionTransform, landmarks_to_transform_matrix, transform_landmarks,
    transform_tensor_bilinear,
};
use face_service::models::attention::kernels::{
    sample_patches, transform_matrices, transform_points,
};
use face_service::models::description::InputDescription;
use face_service::pipeline::crop::gpu::{CropJob, crop_on_device};
use face_service::pipeline::crop::{Border, PixelRect, crop};
use face_service::pipeline::projection::letterbox;
use face_service::tflite::TfliteModel;
use face_service::tflite::flexbuffers::Options;
use image::RgbImage;

use common::{fixtures, read_f32};

/// The CPU twin: crop, then map every byte onto the model's range, planar RGB.
fn cpu_input(
    frame: &RgbImage,
    rect: &PixelRect,
    input: &InputDescription,
    border: Border,
) -> Vec<f32> {
    let cropped = crop(frame, rect, input.width as u32, input.height as u32, border);
    (0..3)
        .flat_map(|channel| cropped.pixels().map(move |p| input.normalize(p[channel])))
        .collect()
}

/// The same crops cut by the shader (into a tensor on the GPU, read back) and by its CPU twin.
fn both_twins(
    gpu: &ComputeDevice,
    frames: &[RgbImage],
    jobs: &[CropJob],
    input: &InputDescription,
    border: Border,
) -> (Vec<f32>, Vec<f32>) {
    let refs: Vec<&RgbImage> = frames.iter().collect();
    let out = (input.width as u32, input.height as u32);
    let on_gpu = crop_on_device(&refs, jobs, out, border, input.range, &gpu.device)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let on_cpu = jobs
        .iter()
        .flat_map(|job| cpu_input(&frames[job.frame], &job.rect, input, border))
        .collect();
    (on_gpu, on_cpu)
}

fn frames() -> Vec<RgbImage> {
    let astronaut = image::open(fixtures().join("face_mesh/astronaut.png"))
        .unwrap()
        .to_rgb8();
    let carphone = carphone_frames().unwrap().swap_remove(0);
    vec![astronaut, carphone]
}

/// GPU and CPU agree to the byte except where a sample position lies on a 1/32-pixel rounding
/// boundary (the GPU maps positions in f32, the CPU in f64): there a byte may move by one.
fn assert_twins(what: &str, gpu: &[f32], cpu: &[f32], one_level: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}");
    let differing = gpu.iter().zip(cpu).filter(|(g, c)| g != c).count();
    let worst = gpu
        .iter()
        .zip(cpu)
        .map(|(g, c)| (g - c).abs())
        .fold(0.0, f32::max);
    eprintln!(
        "{what}: {differing} of {} values differ, worst by {worst:e}",
        gpu.len()
    );
    assert!(worst <= one_level * 1.001, "{what}: worst {worst}");
    assert!(differing * 1000 <= gpu.len(), "{what}: {differing} differ");
}

#[test]
fn the_crop_shader_equals_the_cpu_crop() {
    let gpu = on_gpu();
    let frames = frames();

    // Landmark crops: rotated, partly outside the frame (edge replicated).
    let landmarks = ModelKind::Landmarks.description().input;
    let jobs = [
        CropJob {
            frame: 0,
            rect: PixelRect {
                x_center: 224.0,
                y_center: 125.0,
                width: 160.0,
                height: 160.0,
                rotation: 0.3,
            },
        },
        CropJob {
            frame: 1,
            rect: PixelRect {
                x_center: 80.0,
                y_center: 70.0,
                width: 90.0,
                height: 90.0,
                rotation: -0.7,
            },
        },
        CropJob {
            frame: 0,
            rect: PixelRect {
                x_center: 10.0,
                y_center: 500.0,
                width: 120.0,
                height: 120.0,
                rotation: 2.5,
            },
        },
    ];
    let (on_gpu, on_cpu) = both_twins(&gpu, &frames, &jobs, &landmarks, Border::Replicate);
    assert_twins("landmark crops", &on_gpu, &on_cpu, 1.0 / 255.0);

    // The detector's letterbox of each frame: black outside, range -1..1.
    let detector = ModelKind::Detector.description().input;
    let jobs: Vec<CropJob> = frames
        .iter()
        .enumerate()
        .map(|(frame, image)| CropJob {
            frame,
            rect: letterbox(image.dimensions()),
        })
        .collect();
    let (on_gpu, on_cpu) = both_twins(&gpu, &frames, &jobs, &detector, Border::Zero);
    assert_twins("detector letterboxes", &on_gpu, &on_cpu, 2.0 / 255.0);
}

/// MediaPipe's three region transforms, as the attention model's file defines them.
fn regions() -> Vec<RegionTransform> {
    let file = ModelKind::LandmarksWithAttention.embedded_weights();
    TfliteModel::parse(file)
        .unwrap()
        .custom_ops("Landmarks2TransformMatrix")
        .map(|op| RegionTransform::from_options(&Options::parse(op.options).unwrap(), 468).unwrap())
        .collect()
}

/// Real meshes in crop pixels: MediaPipe's landmarks of the astronaut crop, and the same mesh
/// turned about the crop's centre by 30 and by 100 degrees (a tilted head, an upside-down one).
fn meshes() -> Vec<Vec<f32>> {
    let mesh = read_f32(&fixtures().join("astronaut_face.landmarks.f32"));
    [0.0f32, 30.0, 100.0]
        .iter()
        .map(|degrees| {
            let (sin, cos) = degrees.to_radians().sin_cos();
            mesh.chunks_exact(3)
                .flat_map(|p| {
                    let (x, y) = (p[0] - 96.0, p[1] - 96.0);
                    [96.0 + cos * x - sin * y, 96.0 + sin * x + cos * y, p[2]]
                })
                .collect()
        })
        .collect()
}

fn on_gpu() -> ComputeDevice {
    ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers")
}

fn read<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `shaders/landmarks_to_transform_matrix.wgsl` against its CPU twin, for each region on three
/// real meshes. The shader's sin, cos and atan2 are the GPU's, not Rust's: values (up to ~50
/// feature-map pixels) agree to 1e-4.
#[test]
fn the_transform_matrix_shader_equals_its_cpu_twin() {
    let device = on_gpu();
    let meshes = meshes();
    let batch = Tensor::<2>::from_data(
        TensorData::new(meshes.concat(), [meshes.len(), 468 * 3]),
        &device.device,
    );
    for region in regions() {
        let on_gpu = read(transform_matrices(batch.clone(), &region, 0.25));
        let on_cpu: Vec<f32> = meshes
            .iter()
            .flat_map(|mesh| {
                let scaled: Vec<f32> = mesh.iter().map(|v| v * 0.25).collect();
                landmarks_to_transform_matrix(&scaled, &region)
            })
            .collect();
        let worst = worst_difference(&on_gpu, &on_cpu);
        eprintln!(
            "matrices around point {}: worst difference {worst:e}",
            region.left_rotation_index
        );
        assert!(worst <= 1e-4, "worst difference {worst}");
    }
}

/// `shaders/transform_landmarks.wgsl` against its CPU twin: 80 points per face through real
/// region matrices scaled by the model's constant. Same f32 operations in the same order: 1e-4
/// on values of a few hundred pixels allows only for fused multiply-adds.
#[test]
fn the_landmark_transform_shader_equals_its_cpu_twin() {
    let device = on_gpu();
    let region = &regions()[0];
    let matrices: Vec<Matrix4> = meshes()
        .iter()
        .map(|mesh| {
            let scaled: Vec<f32> = mesh.iter().map(|v| v * 0.25).collect();
            landmarks_to_transform_matrix(&scaled, region)
        })
        .collect();
    let scale: Matrix4 = [
        1.0, 1.0, 4.0, 4.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 1.0, 1.0, 0.25, 0.25, 1.0, 1.0,
    ];
    let points: Vec<f32> = (0..matrices.len() * 160)
        .map(|i| ((i as f32) * 0.37).sin() * 32.0 + 32.0)
        .collect();
    let on_gpu = read(transform_points(
        Tensor::<2>::from_data(
            TensorData::new(points.clone(), [matrices.len(), 160]),
            &device.device,
        ),
        Tensor::<2>::from_data(
            TensorData::new(matrices.concat(), [matrices.len(), 16]),
            &device.device,
        ),
        scale,
    ));
    let on_cpu: Vec<f32> = points
        .chunks_exact(160)
        .zip(&matrices)
        .flat_map(|(points, matrix)| {
            let scaled: Matrix4 = std::array::from_fn(|i| matrix[i] * scale[i]);
            transform_landmarks(points, &scaled)
        })
        .collect();
    let worst = worst_difference(&on_gpu, &on_cpu);
    eprintln!("landmarks: worst difference {worst:e}");
    assert!(worst <= 1e-4, "worst difference {worst}");
}

/// `shaders/transform_tensor_bilinear.wgsl` against its CPU twin: MediaPipe's three region
/// matrices on a real mesh, plus one matrix that puts most of the patch outside the map and one
/// that samples its last row and column exactly. Both sides compute in f32 in the same order;
/// the GPU may fuse a multiply-add, so values (of order 1) may differ in their last bits: 1e-5.
#[test]
fn the_patch_shader_equals_its_cpu_twin() {
    let device = on_gpu();
    let mesh: Vec<f32> = meshes()[0].iter().map(|v| v * 0.25).collect();
    let mut matrices: Vec<Matrix4> = regions()
        .iter()
        .map(|region| landmarks_to_transform_matrix(&mesh, region))
        .collect();
    let identity_at = |x: f32, y: f32, scale: f32| -> Matrix4 {
        [
            scale, 0.0, 0.0, x, 0.0, scale, 0.0, y, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ]
    };
    matrices.push(identity_at(40.0, -8.0, 1.3));
    // Unit scale from (32, 32): patch pixel 15 lands exactly on the map's last pixel, 47.
    matrices.push(identity_at(32.0, 32.0, 1.0));

    let (channels, side, patch) = (32, 48, 16);
    let per_item = channels * side * side;
    let features: Vec<f32> = (0..matrices.len() * per_item)
        .map(|i| ((i as f32) * 0.618).sin() + (i % 7) as f32 * 0.1)
        .collect();
    let on_gpu = read(sample_patches(
        Tensor::<4>::from_data(
            TensorData::new(features.clone(), [matrices.len(), channels, side, side]),
            &device.device,
        ),
        Tensor::<2>::from_data(
            TensorData::new(matrices.concat(), [matrices.len(), 16]),
            &device.device,
        ),
        (patch, patch),
    ));
    let on_cpu: Vec<f32> = matrices
        .iter()
        .enumerate()
        .flat_map(|(n, matrix)| {
            transform_tensor_bilinear(
                &features[n * per_item..(n + 1) * per_item],
                [channels, side, side],
                matrix,
                (patch, patch),
            )
        })
        .collect();
    let worst = worst_difference(&on_gpu, &on_cpu);
    let zeros = on_cpu.iter().filter(|v| **v == 0.0).count();
    eprintln!(
        "patches: {} values, worst difference {worst:e}, {zeros} outside the map",
        on_cpu.len()
    );
    assert!(worst <= 1e-5, "worst difference {worst}");
    // The fourth matrix really did sample outside the map.
    assert!(zeros > 1000, "{zeros}");
}
