//! Every shader equals its CPU twin, on whatever adapter wgpu finds (llvmpipe in CI).

mod common;

use face_service::bench::carphone_frames;
use face_service::gpu::crop::{CropJob, GpuCrop};
use face_service::models::ModelKind;
use face_service::models::description::InputDescription;
use face_service::pipeline::crop::{Border, PixelRect, crop};
use face_service::pipeline::projection::letterbox;
use image::RgbImage;

use common::fixtures;

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

/// The same crops cut by the shader and by its CPU twin.
fn both_twins(
    gpu: &GpuCrop,
    frames: &[RgbImage],
    jobs: &[CropJob],
    input: &InputDescription,
    border: Border,
) -> (Vec<f32>, Vec<f32>) {
    let refs: Vec<&RgbImage> = frames.iter().collect();
    let out = (input.width as u32, input.height as u32);
    let on_gpu = gpu.crop(&refs, jobs, out, border, input.range);
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
    let gpu =
        GpuCrop::on_default_adapter().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
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
