//! The whole FaceMesh pipeline per frame, as a camera stream sees it: the 120 carphone frames
//! upscaled to 640x480 (a webcam's size), tracking (`video`: crop + landmark model) and
//! detecting on every frame (`static`: letterbox + detector + crop + landmark model); and the
//! same with `refine_landmarks` (the attention model, 478 points), as `face_mesh_refined`.
//!
//!     cargo bench --bench pipeline
//!
//! `benches/compare_models.py` prints these beside MediaPipe's FaceMesh on the same frames.

use criterion::{Criterion, criterion_group, criterion_main};
use face_service::bench::footage::carphone_clip;
use face_service::device::ComputeDevice;
use face_service::models::{FaceModels, ModelOptions};
use face_service::pipeline::face_mesh::{FaceMesh, FaceMeshOptions};
use face_service::pipeline::tracker::{FaceTracker, TrackingMode};

const WEBCAM: (u32, u32) = (640, 480);

fn per_frame(c: &mut Criterion) {
    let frames = carphone_clip(WEBCAM.0, WEBCAM.1).expect("the bundled clip");
    for (group_name, refine_landmarks) in
        [("face_mesh/cpu", false), ("face_mesh_refined/cpu", true)]
    {
        let options = ModelOptions {
            refine_landmarks,
            ..ModelOptions::default()
        };
        let models = FaceModels::load(ComputeDevice::cpu(), &options).expect("weights load");
        let mesh = FaceMesh::new(&models, FaceMeshOptions::default());
        let mut group = c.benchmark_group(group_name);
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
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
