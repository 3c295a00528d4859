//! Face recognition: SFace in burn against ONNX Runtime, the alignment warp against OpenCV's,
//! and the labelled photos of `tests/photos/` told apart end to end.
//!
//! `tests/golden/make_recognition_golden.py` took five points off MediaPipe's mesh of each
//! photo, warped the photo onto ArcFace's template with scikit-image's least-squares
//! similarity and `cv2.warpAffine`, and ran ONNX Runtime on the crop (`fixtures/recognition/`).
//!
//! Tolerances:
//! - templates: cosine distance under 1e-4 (the bound). Both runtimes compute float32
//!   convolutions on the same dequantised weights; ours folds the batch normalisations into
//!   the layers (in f64, then rounded), ONNX Runtime folds them in float32, and summation
//!   orders differ. A wrong padding, layout or scale moves the distance by whole tenths.
//! - a batch against its items one by one: the same, 1e-5 of cosine distance, since only the
//!   kernels' tiling can differ.
//! - the warp: ours rounds sample positions as `warpAffine` does (1/1024 pixel, then 1/32) and
//!   filters in the same fixed point, and equals OpenCV's to the byte on these frames. A map
//!   computed in another order can still flip one 1/1024 rounding and move a byte by a grey
//!   level, so: every byte within 1, at most 1% of them off by 1. The frames are PNGs: a JPEG
//!   decodes a grey level or two differently in OpenCV and here, which would hide the warp.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use face_service::device::{Backend, ComputeDevice};
use face_service::frame;
use face_service::matching::{Matcher, Template};
use face_service::models::{FaceModels, ModelOptions};
use face_service::pipeline::alignment;
use face_service::pipeline::recognition::{
    FaceProblem, FaceRecognition, Recognition, RecognizedFace,
};
use image::RgbImage;

use common::{fixtures, read_f32};

const TEMPLATE_DISTANCE: f32 = 1e-4;
const BATCH_DISTANCE: f32 = 1e-5;
const WARP_OFF_BY_ONE: f64 = 0.01;

fn photos() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos")
}

/// Photo file name -> the person in it.
fn labels() -> BTreeMap<String, String> {
    let bytes = std::fs::read(photos().join("labels.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A fixture of `name` (a photo's file name, or a frame's stem).
fn golden(name: &str, what: &str) -> PathBuf {
    let stem = Path::new(name).file_stem().unwrap().to_str().unwrap();
    fixtures()
        .join("recognition")
        .join(format!("{stem}.{what}"))
}

fn read_photo(name: &str) -> RgbImage {
    let bytes = std::fs::read(photos().join(name)).unwrap();
    frame::decode(&bytes, frame::DEFAULT_MAX_SIDE).unwrap()
}

fn onnx_runtime_template(photo: &str) -> Template {
    Template::from_embedding(&read_f32(&golden(photo, "template.f32"))).unwrap()
}

fn aligned_crops() -> Vec<(String, RgbImage)> {
    labels()
        .into_keys()
        .map(|photo| {
            let crop = image::open(golden(&photo, "aligned.png"))
                .unwrap()
                .to_rgb8();
            (photo, crop)
        })
        .collect()
}

fn load(device: ComputeDevice) -> FaceModels {
    let options = ModelOptions::default();
    FaceModels::load(device, &options)
        .and_then(|models| models.with_recognizer(&options))
        .unwrap()
}

/// Every crop in one batch against ONNX Runtime, and the first one alone against the
/// batch.
fn parity(models: &FaceModels, backend: &str) {
    let recognition = FaceRecognition::new(models, 1);
    let crops = aligned_crops();
    let batch = recognition
        .templates(&crops.iter().map(|(_, c)| c).collect::<Vec<_>>())
        .unwrap();
    for ((photo, _), ours) in crops.iter().zip(&batch) {
        let distance = 1.0 - ours.similarity(&onnx_runtime_template(photo));
        assert!(
            distance < TEMPLATE_DISTANCE,
            "{backend}, {photo}: cosine distance {distance:e} to ONNX Runtime"
        );
    }
    for ((photo, crop), in_batch) in crops.iter().zip(&batch).take(1) {
        let alone = &recognition.templates(&[crop]).unwrap()[0];
        let distance = 1.0 - alone.similarity(in_batch);
        assert!(
            distance < BATCH_DISTANCE,
            "{backend}, {photo}: batch vs alone {distance:e}"
        );
    }
}

#[test]
fn cpu_templates_equal_onnx_runtimes() {
    parity(&load(ComputeDevice::cpu()), "cpu");
}

#[test]
fn wgpu_templates_equal_onnx_runtimes() {
    let device = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
    assert!(matches!(device.backend, Backend::Wgpu { .. }));
    parity(&load(device), "wgpu");
}

/// The lossless frames the warp is checked on (`make_recognition_golden.py`'s WARP_SOURCES).
const WARP_SOURCES: [&str; 3] = ["astronaut_full", "carphone_000_full", "carphone_080_full"];

#[test]
fn the_alignment_warp_equals_opencvs() {
    let template = alignment::Template::for_model();
    for source in WARP_SOURCES {
        let points = read_f32(&golden(source, "points.f32"));
        let points: [[f32; 2]; 5] = std::array::from_fn(|i| [points[2 * i], points[2 * i + 1]]);
        let frame = image::open(fixtures().join(format!("{source}.png")))
            .unwrap()
            .to_rgb8();
        let ours = template.warp(&frame, &template.transform(&points).unwrap());
        let theirs = image::open(golden(source, "warped.png")).unwrap().to_rgb8();
        let differences: Vec<u8> = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let worst = differences.iter().max().unwrap();
        let off = differences.iter().filter(|&&d| d > 0).count();
        assert!(*worst <= 1, "{source}: a byte {worst} grey levels off");
        assert!(
            off as f64 / differences.len() as f64 <= WARP_OFF_BY_ONE,
            "{source}: {off} of {} bytes off by one",
            differences.len()
        );
    }
}

/// The whole path, JPEG to template through our detector, mesh and alignment: every pair of
/// photos of the same person above the threshold, every other pair below.
#[test]
fn labelled_photos_are_told_apart_end_to_end() {
    let models = load(ComputeDevice::cpu());
    let recognition = FaceRecognition::new(&models, 1);
    let labels = labels();
    let templates: Vec<(&String, &String, Template)> = labels
        .iter()
        .map(|(photo, person)| {
            let faces = recognition.faces(&read_photo(photo)).unwrap();
            let [face] = <[RecognizedFace; 1]>::try_from(faces).unwrap();
            (photo, person, face.template.unwrap())
        })
        .collect();
    let matcher = Matcher::for_model();
    let mut report = Vec::new();
    let mut wrong = 0;
    for (i, (a, person_a, ta)) in templates.iter().enumerate() {
        for (b, person_b, tb) in &templates[i + 1..] {
            let comparison = matcher.compare(ta, tb);
            let same = person_a == person_b;
            wrong += usize::from(comparison.same_person != same);
            report.push(format!(
                "{a} / {b}: {:.3} ({})",
                comparison.similarity,
                if same { "same" } else { "different" }
            ));
        }
    }
    assert_eq!(wrong, 0, "{}", report.join("\n"));
}

/// A frame without a face, a face too small to recognise, and several faces each get their
/// own answer.
#[test]
fn no_face_a_small_face_and_several_faces_are_told() {
    let models = load(ComputeDevice::cpu());
    let recognition = FaceRecognition::new(&models, 4);

    let no_face = image::open(fixtures().join("astronaut_no_face.png"))
        .unwrap()
        .to_rgb8();
    assert!(recognition.faces(&no_face).unwrap().is_empty());

    let portrait = read_photo("person_b_1.jpg");
    let small = image::imageops::resize(&portrait, 48, 60, image::imageops::FilterType::Triangle);
    let faces = recognition.faces(&small).unwrap();
    assert_eq!(faces.len(), 1, "the small face is still found");
    match faces[0].template {
        Err(FaceProblem::TooSmall { eye_distance }) => assert!(eye_distance < 17.5),
        ref other => panic!("a small face gets {other:?}"),
    }

    // Two people side by side, each its own face with its own template.
    let (a, b) = (read_photo("person_a_2.jpg"), read_photo("impostor_2.jpg"));
    let height = a.height().max(b.height());
    let mut both = RgbImage::new(a.width() + b.width(), height);
    image::imageops::replace(&mut both, &a, 0, 0);
    image::imageops::replace(&mut both, &b, i64::from(a.width()), 0);
    let faces = recognition.faces(&both).unwrap();
    assert_eq!(faces.len(), 2);
    let [first, second] = [&faces[0], &faces[1]].map(|f| f.template.clone().unwrap());
    assert!(!Matcher::for_model().compare(&first, &second).same_person);
}

/// `face-service compare` and `embed`, the built binary: the verdicts on labelled photos, and
/// an image without a face named with its error and a failing exit.
#[test]
fn the_commands_compare_and_embed_photos() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_face-service"))
            .args(["--device", "cpu"])
            .args(args)
            .current_dir(photos())
            .output()
            .unwrap()
    };
    let output = run(&[
        "compare",
        "person_b_1.jpg",
        "person_b_2.jpg",
        "impostor_2.jpg",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["threshold"], serde_json::json!(0.363f32));
    let verdicts: Vec<(String, String, bool)> = report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = |k: &str| p[k].as_str().unwrap().to_owned();
            (name("a"), name("b"), p["same_person"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("person_b_1.jpg".into(), "person_b_2.jpg".into(), true),
            ("person_b_1.jpg".into(), "impostor_2.jpg".into(), false),
            ("person_b_2.jpg".into(), "impostor_2.jpg".into(), false),
        ]
    );

    let no_face = fixtures().join("astronaut_no_face.png");
    let output = run(&["embed", "biden.jpg", no_face.to_str().unwrap()]);
    assert!(!output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let template: Vec<f64> = serde_json::from_value(lines[0]["template"].clone()).unwrap();
    assert_eq!(template.len(), 128);
    let norm: f64 = template.iter().map(|v| v * v).sum();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert_eq!(lines[1]["error"], "no face found");
}

/// The engine's recognition stage on a CPU device worker: a frame that wants a template gets
/// the same one as the whole-image path, batched beside a frame that wants none and a frame
/// without a face.
#[test]
fn the_engine_gives_templates_to_the_frames_that_want_them() {
    use face_service::engine::{Analyze, Engine, EngineConfig, Frame, FrameJob, Outcome, Tracking};

    let models = load(ComputeDevice::cpu());
    let expected = {
        let recognition = FaceRecognition::new(&models, 1);
        let faces = recognition.faces(&read_photo("person_b_2.jpg")).unwrap();
        faces[0].template.clone().unwrap()
    };
    let config = EngineConfig {
        cpu_workers: 1,
        ..EngineConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let engine = Engine::start(models, &config);
        let photo = std::fs::read(photos().join("person_b_2.jpg")).unwrap();
        let no_face = std::fs::read(fixtures().join("astronaut_no_face.png")).unwrap();
        let jobs = [(photo.clone(), true), (photo, false), (no_face, true)];
        let replies: Vec<_> = jobs
            .into_iter()
            .enumerate()
            .map(|(session, (bytes, wants_template))| {
                engine.analyze(FrameJob {
                    frame: Frame::Encoded(bytes),
                    tracking: Tracking::default(),
                    session: session as u64,
                    received: std::time::Instant::now(),
                    wants_template,
                    wants_spoof_score: false,
                })
            })
            .collect();
        let mut templates = Vec::new();
        for reply in replies {
            match reply.await.unwrap().outcome {
                Outcome::Done(analysis) => templates.push(analysis.template),
                other => panic!("{other:?}"),
            }
        }
        let first = templates[0].clone().expect("wanted").expect("a large face");
        assert!(first.similarity(&expected) > 0.9999);
        assert!(templates[1].is_none(), "not wanted");
        assert!(templates[2].is_none(), "no face");
    });
}

/// On a GPU the stage pads template batches with blank crops to a few warmed-up sizes; the
/// padding must not change the real crops' templates, nor add any.
#[test]
fn padded_template_batches_give_the_same_templates() {
    let models = load(ComputeDevice::cpu());
    let recognizer = models.recognizer.as_ref().unwrap();
    let crops = aligned_crops();
    let crops: Vec<&RgbImage> = crops.iter().map(|(_, c)| c).take(3).collect();
    let plain = Recognition::new(recognizer, &models.device, None)
        .templates(&crops)
        .unwrap();
    let padded = Recognition::new(recognizer, &models.device, Some(8));
    padded.warm_up().unwrap();
    let padded = padded.templates(&crops).unwrap();
    assert_eq!(padded.len(), 3);
    for (a, b) in plain.iter().zip(&padded) {
        assert!(1.0 - a.similarity(b) < BATCH_DISTANCE);
    }
}
