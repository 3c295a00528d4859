//! Forward pass of the detector, the two landmark models (468 points, and 478 with the
//! attention model) and the recognition model by batch size, on each backend present.
//!
//! Every reported time is **per frame**: each iteration runs one batch, reads the outputs back
//! to the host (as the server must), and the elapsed time is divided by the batch size.
//!
//!     cargo bench --bench models                  # CPU (flex), and wgpu on a hardware GPU
//!     FACE_SERVICE_BENCH_BATCHES=1,8 cargo bench --bench models
//!     FACE_SERVICE_BENCH_SOFTWARE_GPU=1 ...       # also time a software adapter (llvmpipe)
//!
//! `benches/compare_models.py` runs this and MediaPipe's own runtime in one go and prints
//! the ratio table that goes in BENCHMARKS.md.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use face_service::device::{Backend, ComputeDevice};
use face_service::models::{FaceModels, ModelKind, ModelOptions};

const DEFAULT_BATCHES: [usize; 4] = [1, 8, 32, 128];

fn batches() -> Vec<usize> {
    std::env::var("FACE_SERVICE_BENCH_BATCHES")
        .ok()
        .map(|list| {
            list.split(',')
                .map(|b| b.trim().parse().expect("batch sizes are integers"))
                .collect()
        })
        .unwrap_or_else(|| DEFAULT_BATCHES.to_vec())
}

/// The backends to time: always the CPU; wgpu when its adapter is real hardware (a software
/// adapter takes minutes per batch size, so only on request).
fn devices() -> Vec<(&'static str, ComputeDevice)> {
    let mut devices = vec![("cpu", ComputeDevice::cpu())];
    if let Ok(gpu) = ComputeDevice::gpu() {
        let software = matches!(gpu.backend, Backend::Wgpu { software: true, .. });
        if !software || std::env::var_os("FACE_SERVICE_BENCH_SOFTWARE_GPU").is_some() {
            eprintln!("benchmarking on {}", gpu.backend);
            devices.push(("wgpu", gpu));
        }
    }
    devices
}

/// A deterministic input in the model's range; the numbers don't change the work done.
fn input(kind: ModelKind, batch: usize, models: &FaceModels) -> Tensor<4> {
    let description = kind.description().input;
    let count = batch * 3 * description.width * description.height;
    let values: Vec<f32> = (0..count)
        .map(|i| description.normalize((i * 37 % 256) as u8))
        .collect();
    Tensor::from_data(
        TensorData::new(values, [batch, 3, description.height, description.width]),
        &models.device.device,
    )
}

fn forward_and_read_back(models: &FaceModels, kind: ModelKind, input: Tensor<4>) {
    match kind {
        ModelKind::Recognition => {
            let recognizer = models
                .recognizer
                .as_ref()
                .expect("loaded with the recognizer");
            std::hint::black_box(recognizer.forward(input).into_data());
        }
        ModelKind::Detector => {
            let output = models.detector.forward(input);
            std::hint::black_box(output.regressors.into_data());
            std::hint::black_box(output.scores.into_data());
        }
        ModelKind::Landmarks | ModelKind::LandmarksWithAttention => {
            // The forward pass reads its outputs back itself.
            std::hint::black_box(models.landmarker.forward(input));
        }
        ModelKind::AntiSpoofing => {
            // Both networks, as every judged face runs them.
            let detector = models
                .anti_spoofing
                .as_ref()
                .expect("loaded with anti-spoofing");
            for network in &detector.networks {
                std::hint::black_box(network.forward(input.clone()).into_data());
            }
        }
    }
}

fn forward_by_batch(c: &mut Criterion) {
    for (backend, device) in devices() {
        let models = FaceModels::load(device.clone(), &ModelOptions::default())
            .and_then(|models| models.with_identity_models(&ModelOptions::default()))
            .expect("weights");
        let refining = ModelOptions {
            refine_landmarks: true,
            ..ModelOptions::default()
        };
        let refined = FaceModels::load(device, &refining).expect("weights load");
        for (kind, models) in [
            (ModelKind::Landmarks, &models),
            (ModelKind::LandmarksWithAttention, &refined),
            (ModelKind::Detector, &models),
            (ModelKind::Recognition, &models),
            (ModelKind::AntiSpoofing, &models),
        ] {
            let name = kind.description().name;
            let mut group = c.benchmark_group(format!("{name}/{backend}"));
            group.sample_size(10).warm_up_time(Duration::from_secs(2));
            for batch in batches() {
                let input = input(kind, batch, models);
                group.bench_with_input(
                    BenchmarkId::new("per_frame_batch", batch),
                    &batch,
                    |b, &batch| {
                        b.iter_custom(|iterations| {
                            let started = Instant::now();
                            for _ in 0..iterations {
                                forward_and_read_back(models, kind, input.clone());
                            }
                            started.elapsed() / batch as u32
                        });
                    },
                );
            }
            group.finish();
        }
    }
}

criterion_group!(benches, forward_by_batch);
criterion_main!(benches);
