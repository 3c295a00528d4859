//! The whole FaceMesh pipeline per frame, as a camera stream sees it: the 120 carphone frames
//! upscaled to 640x480 (a webcam's size), tracking (`video`: crop + landmark model) and
//! detecting on every frame (`static`: letterbox + detector + crop + landmark model).
//!
//!     cargo bench --bench pipeline
//!
//! `benches/compare_models.py` prints these beside MediaPipe's FaceMesh on the same frames.

use criterion::{Criterion, criterion_group, criterion_main};
use face_service::device::ComputeDevice;
use face_service::models::{FaceModels, ModelOptions};
use face_service::pipeline::crop::resize;
use face_service::pipeline::face_mesh::{FaceMesh, FaceMeshOptions};
use face_service::pipeline::tracker::{FaceTracker, TrackingMode};
use image::RgbImage;

const CARPHONE: (u32, u32) = (176, 144);
const WEBCAM: (u32, u32) = (640, 480);

fn frames() -> Vec<RgbImage> {
    let strip = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/fixtures/face_mesh/carphone_176x144.png"
    );
    let strip = image::open(strip).expect("carphone fixture").to_rgb8();
    (0..strip.height() / CARPHONE.1)
        .map(|i| {
            let frame =
                image::imageops::crop_imm(&strip, 0, i * CARPHONE.1, CARPHONE.0, CARPHONE.1)
                    .to_image();
            resize(&frame, WEBCAM.0, WEBCAM.1)
        })
        .collect()
}

fn per_frame(c: &mut Criterion) {
    let frames = frames();
    let models =
        FaceModels::load(ComputeDevice::cpu(), &ModelOptions::default()).expect("weights load");
    let mesh = FaceMesh::new(&models, FaceMeshOptions::default());
    let mut group = c.benchmark_group("face_mesh/cpu");
    group.sample_size(20);
    for (name, mode) in [
        ("video", TrackingMode::Video),
        ("static", TrackingMode::Static),
    ] {
        let mut tracker = FaceTracker::new(mode);
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let faces = tracker
                    .process(&mesh, &frames[next % frames.len()])
                    .expect("frame");
                next += 1;
                faces
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
