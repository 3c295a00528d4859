//! Every shader equals its CPU twin, on whatever adapter wgpu finds (llvmpipe in CI).

mod common;

use burn::tensor::{Tensor, TensorData};
use face_service::bench::carphone_frames;
use face_service::device::ComputeDevice;
use face_service::gpu::crop::{CropJob, crop_on_device};
use face_service::models::ModelKind;
use face_service::models::attention::custom_ops::{
    Matrix4, RegionTransform, landmarks_to_transform_matrix, transform_tensor_bilinear,
};
use face_service::models::attention::sampling::sample_patches;
use face_service::models::description::InputDescription;
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
    let gpu = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
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

/// `shaders/transform_tensor_bilinear.wgsl`, launched on burn tensors through the attention
/// model's backend extension, against its CPU twin: the three region matrices MediaPipe's file
/// defines, computed from a real mesh (MediaPipe's landmarks of the astronaut crop), plus one
/// matrix that puts most of the patch outside the map and one that samples its last row and
/// column exactly. Both sides compute in f32 in the same order; the GPU may fuse a
/// multiply-add, so values (of order 1) may differ in their last bits: 1e-5.
#[test]
fn the_patch_shader_equals_its_cpu_twin() {
    let device = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
    let file = ModelKind::LandmarksWithAttention.embedded_weights();
    let model = TfliteModel::parse(file).unwrap();
    let mesh: Vec<f32> = read_f32(&fixtures().join("astronaut_face.landmarks.f32"))
        .iter()
        .map(|v| v * 0.25) // crop pixels to feature-map pixels, as the model does
        .collect();
    let mut matrices: Vec<Matrix4> = model
        .custom_ops("Landmarks2TransformMatrix")
        .map(|op| {
            let region =
                RegionTransform::from_options(&Options::parse(op.options).unwrap(), 468).unwrap();
            landmarks_to_transform_matrix(&mesh, &region)
        })
        .collect();
    assert_eq!(matrices.len(), 3);
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
    let tensor = Tensor::<4>::from_data(
        TensorData::new(features.clone(), [matrices.len(), channels, side, side]),
        &device.device,
    );
    let on_gpu = sample_patches(tensor, &matrices, (patch, patch))
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
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
    assert_eq!(on_gpu.len(), on_cpu.len());
    let worst = on_gpu
        .iter()
        .zip(&on_cpu)
        .map(|(g, c)| (g - c).abs())
        .fold(0.0f32, f32::max);
    let zeros = on_cpu.iter().filter(|v| **v == 0.0).count();
    eprintln!(
        "patches: {} values, worst difference {worst:e}, {zeros} outside the map",
        on_cpu.len()
    );
    assert!(worst <= 1e-5, "worst difference {worst}");
    // The fourth matrix really did sample outside the map, and the last exactly at its edge.
    assert!(zeros > 1000, "{zeros}");
}
