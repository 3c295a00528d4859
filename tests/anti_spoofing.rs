//! Anti-spoofing: MiniFASNet in burn against PyTorch, our crops against upstream's, and the
//! samples at hand judged as labelled, end to end from their files.
//!
//! `tests/golden/make_anti_spoofing_golden.py` took each image's face box from our pipeline
//! (`face-service analyze`), cut the two crops as Silent-Face-Anti-Spoofing does (OpenCV,
//! BGR), ran both networks in PyTorch on them, and wrote the crops and the probabilities
//! (`fixtures/anti_spoofing/`).
//!
//! Tolerances:
//! - probabilities: within 1e-4 (the bound). Both sides compute float32 convolutions
//!   on the same weights; ours folds the batch normalisations and the last three linear steps
//!   into the layers (in f64, then rounded), PyTorch runs them apart, and summation orders
//!   differ. A wrong channel order, padding or stride moves probabilities by tenths.
//! - the view: the region each network sees is computed the same way on both sides, so it is
//!   equal to the pixel.
//! - the crop: ours samples with the pipeline's warp (bilinear, positions in 1/32 pixel), where
//!   OpenCV's `resize` has its own fixed point, and the JPEGs decode a grey level or two
//!   differently here and in OpenCV: mean difference under 1.5 grey levels.
//! - the end-to-end score (our decode, mesh and crop, then the networks) within 0.05 of
//!   PyTorch's on OpenCV's crops: the verdicts must not hinge on those small differences.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use face_service::device::{Backend, ComputeDevice};
use face_service::frame;
use face_service::models::{FaceModels, ModelOptions};
use face_service::pipeline::anti_spoofing::{SpoofCheck, view_of};
use face_service::pipeline::crop::Placement;
use face_service::pipeline::face_mesh::{FaceMesh, FaceMeshOptions};
use face_service::pipeline::tracker::{FaceTracker, TrackingMode};
use image::RgbImage;
use serde::Deserialize;

use common::{fixtures, manifest_cases, stdout_of};

const PROBABILITY: f32 = 1e-4;
const CROP_MEAN_DIFFERENCE: f64 = 1.5;
const END_TO_END_SCORE: f32 = 0.05;

#[derive(Deserialize)]
struct Case {
    image: String,
    #[serde(rename = "box")]
    face_box: [f32; 4],
    networks: Vec<NetworkCase>,
    real_score: f32,
}

#[derive(Deserialize)]
struct NetworkCase {
    network: String,
    crop: String,
    crop_box: [u32; 4],
    probabilities: [f32; 3],
}

fn cases() -> Vec<Case> {
    manifest_cases("anti_spoofing/manifest.json")
}

fn crop(case: &NetworkCase) -> RgbImage {
    let path = fixtures().join("anti_spoofing").join(&case.crop);
    image::open(path).unwrap().to_rgb8()
}

fn read_image(relative: &str) -> RgbImage {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap();
    frame::decode(&bytes, frame::DEFAULT_MAX_SIDE).unwrap()
}

fn load(device: ComputeDevice) -> FaceModels {
    let options = ModelOptions::default();
    FaceModels::load(device, &options)
        .and_then(|models| models.with_anti_spoofing(&options))
        .unwrap()
}

fn check(models: &FaceModels) -> SpoofCheck<'_> {
    check_placed(models, Placement::default())
}

fn check_placed(models: &FaceModels, placement: Placement) -> SpoofCheck<'_> {
    SpoofCheck::new(
        models.anti_spoofing.as_ref().unwrap(),
        &models.device,
        placement,
    )
}

/// Every case's crop in one batch per network, against PyTorch.
fn parity(models: &FaceModels, backend: &str) {
    let check = check(models);
    let cases = cases();
    for network in 0..2 {
        let crops: Vec<RgbImage> = cases.iter().map(|c| crop(&c.networks[network])).collect();
        let ours = check
            .probabilities(network, &crops.iter().collect::<Vec<_>>())
            .unwrap();
        for (case, ours) in cases.iter().zip(ours) {
            let expected = &case.networks[network];
            for (class, (ours, pytorch)) in ours.iter().zip(expected.probabilities).enumerate() {
                assert!(
                    (ours - pytorch).abs() < PROBABILITY,
                    "{backend}, {}, {}, class {class}: {ours} vs PyTorch's {pytorch}",
                    case.image,
                    expected.network
                );
            }
        }
    }
}

#[test]
fn cpu_probabilities_equal_pytorchs() {
    parity(&load(ComputeDevice::cpu()), "cpu");
}

/// On wgpu: the networks against PyTorch, and the scores of crops cut by the crop shader
/// (`--gpu-crop`) against those of crops cut on the CPU, every case in one batch (the shapes
/// the parity check compiled). The shader equals the CPU sampler to the byte
/// (`tests/shaders.rs`), so only the kernels' summation order can differ: 1e-4.
#[test]
fn wgpu_probabilities_equal_pytorchs_with_either_crop() {
    let device = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
    assert!(matches!(device.backend, Backend::Wgpu { .. }));
    let models = load(device);
    parity(&models, "wgpu");
    let cases = cases();
    let frames: Vec<RgbImage> = cases.iter().map(|c| read_image(&c.image)).collect();
    let faces: Vec<(&RgbImage, [f32; 4])> = frames
        .iter()
        .zip(&cases)
        .map(|(f, c)| (f, c.face_box))
        .collect();
    let on_device = Placement {
        padded_batches_up_to: None,
        on_device: true,
    };
    let shader = check_placed(&models, on_device).scores(&faces).unwrap();
    let cpu = check(&models).scores(&faces).unwrap();
    for ((case, shader), cpu) in cases.iter().zip(shader).zip(cpu) {
        assert!(
            (shader - cpu).abs() < PROBABILITY,
            "{}: {shader} cut by the shader, {cpu} on the CPU",
            case.image
        );
    }
}

#[test]
fn our_crops_are_upstreams() {
    let models = load(ComputeDevice::cpu());
    let check = check(&models);
    let scales = [2.7, 4.0];
    for case in cases() {
        let frame = read_image(&case.image);
        let ours = check.crops(&frame, case.face_box);
        for ((network, ours), scale) in case.networks.iter().zip(&ours).zip(scales) {
            let view = view_of(frame.width(), frame.height(), case.face_box, scale);
            assert_eq!(
                view, network.crop_box,
                "{}, {}",
                case.image, network.network
            );
            let upstream = crop(network);
            let difference: f64 = ours
                .as_raw()
                .iter()
                .zip(upstream.as_raw())
                .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                .sum::<f64>()
                / ours.as_raw().len() as f64;
            assert!(
                difference < CROP_MEAN_DIFFERENCE,
                "{}, {}: mean difference {difference:.2} grey levels",
                case.image,
                network.network
            );
        }
    }
}

/// Each image's first face found by our pipeline, and its score.
fn scores_end_to_end(images: &[&str]) -> Vec<f32> {
    let models = load(ComputeDevice::cpu());
    let check = check(&models);
    let mesh = FaceMesh::new(&models, FaceMeshOptions::default());
    images
        .iter()
        .map(|image| {
            let frame = read_image(image);
            let faces = FaceTracker::new(TrackingMode::Static)
                .process(&mesh, &frame)
                .unwrap();
            let face = faces.first().unwrap_or_else(|| panic!("{image}: no face"));
            check.scores(&[(&frame, face.bounding_box())]).unwrap()[0]
        })
        .collect()
}

#[test]
fn the_samples_are_judged_as_labelled_end_to_end() {
    let threshold = check(&load(ComputeDevice::cpu())).real_threshold();
    let cases = cases();
    let images: Vec<&str> = cases.iter().map(|c| c.image.as_str()).collect();
    for (case, ours) in cases.iter().zip(scores_end_to_end(&images)) {
        // Upstream's print and screen samples are attacks; every other image, the labelled
        // photos, the carphone clip's frames and the astronaut, is a live face.
        let attack = case.image.contains("silent_face_F");
        assert_eq!(ours >= threshold, !attack, "{}: score {ours}", case.image);
        assert!(
            (ours - case.real_score).abs() < END_TO_END_SCORE,
            "{}: {ours} end to end, {} in PyTorch on OpenCV's crops",
            case.image,
            case.real_score
        );
    }
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_face-service"))
}

#[test]
fn analyze_reports_each_faces_score_and_verdict() {
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos");
    let printed = stdout_of(
        Command::new(binary())
            .args(["analyze", "--anti-spoofing", "--device", "cpu"])
            .arg(photos.join("silent_face_F2_screen.jpg"))
            .arg(photos.join("silent_face_T1_live.jpg")),
    );
    let lines: Vec<serde_json::Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, real) in lines.iter().zip([false, true]) {
        let face = &line["faces"][0];
        let score = face["anti_spoofing_score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{line}");
        assert_eq!(face["real"], real, "{}", line["image"]);
    }
    // Without the flag the line is as before.
    let printed = stdout_of(
        Command::new(binary())
            .args(["analyze", "--device", "cpu"])
            .arg(photos.join("silent_face_T1_live.jpg")),
    );
    let line: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert!(
        line["faces"][0].get("anti_spoofing_score").is_none(),
        "{line}"
    );
}
