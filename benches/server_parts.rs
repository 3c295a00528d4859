//! The server's per-frame costs outside the models, each on its own: decoding a client's JPEG,
//! cutting the landmark model's input out of a frame (on the CPU; and where a wgpu adapter
//! exists, a batch of 32 into a device tensor both ways: CPU crops uploaded, or frames
//! uploaded and cut by the crop shader), forming a batch in the engine's queue,
//! and encoding a `frame_processed` answer as JSON.
//!
//!     cargo bench --bench server_parts

use std::time::{Duration, Instant};

use burn::tensor::Tensor;
use criterion::{Criterion, criterion_group, criterion_main};
use face_service::bench::footage::carphone_clip;
use face_service::device::ComputeDevice;
use face_service::engine::queue::{BatchQueue, Next, QueueLimits};
use face_service::frame;
use face_service::liveness::check::{LivenessCheck, LivenessRules, SessionKind};
use face_service::liveness::pose::head_pose;
use face_service::liveness::quality::{QualityRules, assess};
use face_service::models::ModelKind;
use face_service::models::input::images_to_tensor;
use face_service::pipeline::crop::gpu::{CropJob, crop_on_device};
use face_service::pipeline::crop::{Border, PixelRect, crop};
use face_service::pipeline::face_mesh::FaceLandmarks;
use face_service::server::answers::{self, FaceReport, FrameContext, Timings};
use image::RgbImage;

const WEBCAM: (u32, u32) = (640, 480);
/// A face-sized region of the carphone frame, turned a little, as tracking gives it.
const ROI: PixelRect = PixelRect {
    x_center: 300.0,
    y_center: 220.0,
    width: 260.0,
    height: 260.0,
    rotation: -0.25,
};

fn webcam_frame() -> RgbImage {
    carphone_clip(WEBCAM.0, WEBCAM.1)
        .expect("the bundled clip")
        .swap_remove(40)
}

fn decode(c: &mut Criterion) {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&webcam_frame())
        .unwrap();
    c.bench_function("frame/decode_jpeg_640x480_q80", |b| {
        b.iter(|| frame::decode(&jpeg, frame::DEFAULT_MAX_SIDE).unwrap())
    });
}

fn crops(c: &mut Criterion) {
    let frame = webcam_frame();
    c.bench_function("crop/cpu_landmark_input_192", |b| {
        b.iter(|| crop(&frame, &ROI, 192, 192, Border::Replicate))
    });
    let Ok(gpu) = ComputeDevice::gpu() else {
        eprintln!("crop/wgpu: no wgpu adapter, skipped");
        return;
    };
    // 32 sessions' frames, turned into the landmark model's input tensor on the GPU, both ways:
    // cut on the CPU and the float crops uploaded (442 KB a frame), or the frames' bytes
    // uploaded (922 KB a 640x480 frame) and cut by the crop shader. Each iteration waits for the
    // device by reading one value back.
    let frames: Vec<RgbImage> = (0..32).map(|_| frame.clone()).collect();
    let refs: Vec<&RgbImage> = frames.iter().collect();
    let jobs: Vec<CropJob> = (0..32)
        .map(|i| CropJob {
            frame: i,
            rect: ROI,
        })
        .collect();
    let input = ModelKind::Landmarks.description().input;
    let wait = |tensor: Tensor<4>| -> f32 { tensor.slice([0..1, 0..1, 0..1, 0..1]).into_scalar() };
    eprintln!("crop/wgpu on {}", gpu.backend);
    let mut group = c.benchmark_group("crop/wgpu");
    group.sample_size(10);
    group.bench_function("cpu_crop_then_upload_batch_32", |b| {
        b.iter(|| {
            let crops: Vec<RgbImage> = refs
                .iter()
                .map(|f| crop(f, &ROI, 192, 192, Border::Replicate))
                .collect();
            let crops: Vec<&RgbImage> = crops.iter().collect();
            wait(images_to_tensor(&crops, &input, &gpu.device).unwrap())
        })
    });
    group.bench_function("upload_frames_then_crop_shader_batch_32", |b| {
        b.iter(|| {
            wait(crop_on_device(
                &refs,
                &jobs,
                (192, 192),
                Border::Replicate,
                input.range,
                &gpu.device,
            ))
        })
    });
    group.finish();
}

fn queue(c: &mut Criterion) {
    let limits = QueueLimits {
        max_batch: 32,
        max_delay: Duration::from_millis(5),
        capacity: 256,
    };
    c.bench_function("queue/256_frames_into_batches_of_32", |b| {
        b.iter(|| {
            let mut queue = BatchQueue::new(limits);
            let now = Instant::now();
            for i in 0..256u64 {
                let _ = queue.push(i, i % 64, now, now + Duration::from_secs(2));
            }
            let mut dropped = Vec::new();
            let mut batches = 0;
            while let Next::Run(batch) = queue.next_batch(now, |_| true, &mut dropped) {
                batches += batch.len();
            }
            batches
        })
    });
}

fn answer_json(c: &mut Criterion) {
    // A real face: the astronaut's landmarks as MediaPipe gives them, in the fixtures.
    let values: Vec<f32> = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/fixtures/face_mesh/astronaut_static.landmarks.f32"
    ))
    .unwrap()
    .chunks_exact(4)
    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
    .collect();
    let face = FaceLandmarks {
        presence: 0.99,
        points: values.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
    };
    let photo = image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/fixtures/face_mesh/astronaut.png"
    ))
    .unwrap()
    .to_rgb8();
    let pose = head_pose(&face.points).unwrap();
    let quality = assess(
        &photo,
        face.bounding_box(),
        1,
        pose,
        &QualityRules::default(),
    );
    let mut check = LivenessCheck::new(SessionKind::Enrollment, LivenessRules::default());
    let (indicators, progress) = check.observe(
        &face.points,
        face.bounding_box(),
        pose,
        quality.score,
        Duration::ZERO,
    );
    let timings = Timings {
        queue_wait_ms: 1.0,
        inference_ms: 7.0,
        total_ms: 9.0,
        batch_size: 8,
    };
    let report = FaceReport {
        face: &face,
        face_box: face.bounding_box(),
        faces: 1,
        quality: &quality,
    };
    c.bench_function("answer/frame_processed_json_468_points", |b| {
        b.iter(|| {
            let frame = FrameContext {
                frames_processed: 7,
                timings: &timings,
                id: None,
            };
            answers::face_processed(frame, &report, &indicators, &progress).json
        })
    });
    c.bench_function("liveness/quality_of_a_512px_frame", |b| {
        b.iter(|| {
            assess(
                &photo,
                face.bounding_box(),
                1,
                pose,
                &QualityRules::default(),
            )
        })
    });
}

criterion_group!(benches, decode, crops, queue, answer_json);
criterion_main!(benches);
