//! Golden parity of the whole pipeline with MediaPipe's FaceMesh solution on real footage.
//!
//! `tests/golden/make_face_mesh_golden.py` ran `mp.solutions.face_mesh.FaceMesh` (mediapipe
//! 0.10.21, one face, no refinement) on the astronaut photo and on the 120 carphone frames
//! upscaled to 640x480, in static mode and in video (tracking) mode. face-service must find
//! the same number of faces in every frame, with landmarks (x, y) within a mean of 1 px and a
//! worst case of 4 px at 640x480: the models agree to 1e-4 px (see `golden_models.rs`), so what
//! is left is the pipeline's geometry, and a 1 px mean is well under the jitter of the
//! landmarks themselves between consecutive frames of a still face.

mod common;

use face_service::bench::footage::{carphone_clip, carphone_frames};
use face_service::device::ComputeDevice;
use face_service::liveness::blinks::{BlinkCounter, BlinkRules};
use face_service::liveness::indicators::mean_eye_aspect_ratio;
use face_service::models::{FaceModels, ModelOptions};
use face_service::pipeline::crop::{Border, PixelRect, crop};
use face_service::pipeline::face_mesh::{FaceLandmarks, FaceMesh, FaceMeshOptions};
use face_service::pipeline::tracker::{FaceTracker, TrackingMode, process_batch};
use image::RgbImage;
use serde::Deserialize;

use common::{fixtures, manifest_cases, read_f32};

const MEAN_TOLERANCE_PX: f32 = 1.0;
const WORST_TOLERANCE_PX: f32 = 4.0;
const UPSCALED: (u32, u32) = (640, 480);

#[derive(Deserialize)]
struct Case {
    name: String,
    mode: String,
    max_faces: usize,
    faces_per_frame: Vec<usize>,
    landmarks: String,
    /// Run with `refine_landmarks=True`: 478 points per face.
    #[serde(default)]
    refine: bool,
}

fn case(name: &str) -> Case {
    manifest_cases::<Case>("face_mesh/manifest.json")
        .into_iter()
        .find(|c| c.name == name)
        .unwrap()
}

/// MediaPipe's landmarks, one `Vec` of 468 (refined: 478) points per face found, in frame
/// order.
fn expected_faces(case: &Case) -> Vec<Vec<[f32; 3]>> {
    let values = read_f32(&fixtures().join("face_mesh").join(&case.landmarks));
    let points = if case.refine { 478 } else { 468 };
    values
        .chunks_exact(points * 3)
        .map(|face| face.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect())
        .collect()
}

/// The 120 carphone frames upscaled to 640x480 with a corner-aligned bilinear warp, the
/// same operation (and so the same bytes) as the generator's OpenCV call.
fn carphone_640x480() -> Vec<RgbImage> {
    carphone_clip(UPSCALED.0, UPSCALED.1).unwrap()
}

/// Mean and worst (x, y) distance between two meshes, in pixels.
fn errors(actual: &FaceLandmarks, expected: &[[f32; 3]]) -> (f32, f32) {
    assert_eq!(actual.points.len(), expected.len(), "points per face");
    distances(&actual.points, expected)
}

fn distances(actual: &[[f32; 3]], expected: &[[f32; 3]]) -> (f32, f32) {
    let distances: Vec<f32> = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| ((a[0] - e[0]).powi(2) + (a[1] - e[1]).powi(2)).sqrt())
        .collect();
    let mean = distances.iter().sum::<f32>() / distances.len() as f32;
    (mean, distances.iter().copied().fold(0.0, f32::max))
}

/// What `check` ran: the tracker (how often did the detector run?) and the faces per frame.
struct Tracked {
    tracker: FaceTracker,
    faces: Vec<Vec<FaceLandmarks>>,
}

/// Runs `frames` through one tracker and holds every frame to MediaPipe's answer.
fn check(label: &str, models: &FaceModels, case: &Case, frames: &[RgbImage]) -> Tracked {
    check_cropping(label, models, case, frames, false)
}

/// `check`, with the model inputs cut by the crop shader where `crop_on_device`.
fn check_cropping(
    label: &str,
    models: &FaceModels,
    case: &Case,
    frames: &[RgbImage],
    crop_on_device: bool,
) -> Tracked {
    let mode = match case.mode.as_str() {
        "video" => TrackingMode::Video,
        _ => TrackingMode::Static,
    };
    let options = FaceMeshOptions {
        max_faces: case.max_faces,
        crop_on_device,
        ..FaceMeshOptions::default()
    };
    let mesh = FaceMesh::new(models, options);
    let mut tracker = FaceTracker::new(mode);
    let mut expected = expected_faces(case).into_iter();
    let (mut sum_of_means, mut worst, mut iris_worst, mut faces) = (0.0, 0.0f32, 0.0f32, 0);
    let mut per_frame = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        let found = tracker.process(&mesh, frame).unwrap();
        let count = case.faces_per_frame[index];
        assert_eq!(
            found.len(),
            count,
            "{label} {} frame {index}: faces",
            case.name
        );
        let theirs: Vec<_> = expected.by_ref().take(count).collect();
        for face in &found {
            // Faces may come in another order when scores tie closely: pair each with the
            // nearest of MediaPipe's.
            let nearest = theirs
                .iter()
                .min_by(|a, b| errors(face, a).0.total_cmp(&errors(face, b).0))
                .unwrap();
            let (mean, max) = errors(face, nearest);
            assert!(
                mean < MEAN_TOLERANCE_PX && max < WORST_TOLERANCE_PX,
                "{label} {} frame {index}: mean {mean:.3} px, worst {max:.3} px",
                case.name
            );
            if case.refine {
                // The ten iris points on their own: a mean over 478 points could hide them.
                let (iris_mean, iris_max) = distances(&face.points[468..], &nearest[468..]);
                assert!(
                    iris_mean < MEAN_TOLERANCE_PX && iris_max < WORST_TOLERANCE_PX,
                    "{label} {} frame {index}: irises mean {iris_mean:.3} px, worst {iris_max:.3} px",
                    case.name
                );
                iris_worst = iris_worst.max(iris_max);
            }
            sum_of_means += mean;
            worst = worst.max(max);
            faces += 1;
        }
        per_frame.push(found);
    }
    eprintln!(
        "{label} {}: {faces} faces, mean error {:.3} px, worst {worst:.3} px (irises: worst \
         {iris_worst:.3} px), detector ran {} times",
        case.name,
        sum_of_means / faces.max(1) as f32,
        tracker.detector_runs()
    );
    Tracked {
        tracker,
        faces: per_frame,
    }
}

/// The seed's blink rule, run by `tests/golden/make_liveness_golden.py` on MediaPipe's own
/// landmarks of the carphone clip (`reference`, in `fixtures/liveness/`): the eyes must read
/// closed on the same frames and the blinks add up frame for frame on ours. No tolerance: a
/// blink is counted or it is not (the references' closest ratios to their thresholds are
/// 0.004 and, refined, 0.002, well clear of our landmarks' error).
fn assert_blinks_match_the_seed_reference(
    label: &str,
    reference: &str,
    faces: &[Vec<FaceLandmarks>],
) {
    #[derive(Deserialize)]
    struct Frame {
        eyes_closed: bool,
        blinks: usize,
    }
    #[derive(Deserialize)]
    struct Reference {
        frames: Vec<Frame>,
    }
    let path = fixtures().join("liveness").join(reference);
    let reference: Reference = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(faces.len(), reference.frames.len());
    let mut counter = BlinkCounter::new(BlinkRules::default());
    for (index, (found, expected)) in faces.iter().zip(&reference.frames).enumerate() {
        let update = counter.update(mean_eye_aspect_ratio(&found[0].points));
        assert_eq!(
            (update.eyes_closed, counter.blinks()),
            (expected.eyes_closed, expected.blinks),
            "{label} frame {index}: (eyes closed, blinks so far)"
        );
    }
    eprintln!("{label}: {} blinks, as the reference", counter.blinks());
}

fn photo(name: &str) -> Vec<RgbImage> {
    let path = fixtures().join("face_mesh").join(name);
    vec![image::open(path).unwrap().to_rgb8()]
}

fn astronaut() -> Vec<RgbImage> {
    photo("astronaut.png")
}

fn cpu_models() -> FaceModels {
    FaceModels::load(ComputeDevice::cpu(), &ModelOptions::default()).unwrap()
}

/// With MediaPipe's attention model: `refine_landmarks=True`.
fn refining(device: ComputeDevice) -> FaceModels {
    let options = ModelOptions {
        refine_landmarks: true,
        ..ModelOptions::default()
    };
    FaceModels::load(device, &options).unwrap()
}

#[test]
fn static_mode_matches_mediapipe_on_cpu() {
    let models = cpu_models();
    check("cpu", &models, &case("astronaut_static"), &astronaut());
    check(
        "cpu",
        &models,
        &case("two_faces_static"),
        &photo("two_faces.png"),
    );
    check(
        "cpu",
        &models,
        &case("carphone_static"),
        &carphone_640x480(),
    );
}

/// 478 points with irises, against MediaPipe's `refine_landmarks=True`, with the same
/// tolerances as the mesh (and held on the ten iris points on their own).
#[test]
fn refined_landmarks_match_mediapipe_on_cpu() {
    let models = refining(ComputeDevice::cpu());
    check(
        "cpu",
        &models,
        &case("astronaut_static_refined"),
        &astronaut(),
    );
    let frames = carphone_640x480();
    check("cpu", &models, &case("carphone_static_refined"), &frames);
    let tracked = check("cpu", &models, &case("carphone_video_refined"), &frames);
    assert_eq!(tracked.tracker.detector_runs(), 1);
    assert_blinks_match_the_seed_reference("cpu", "carphone_blinks_refined.json", &tracked.faces);
}

/// Frames with nothing to find, or next to nothing to look at, answer "no faces".
#[test]
fn frames_without_faces_give_no_faces() {
    let models = cpu_models();
    let mesh = FaceMesh::new(&models, FaceMeshOptions::default());
    let blank = RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let one_pixel = RgbImage::from_pixel(1, 1, image::Rgb([200, 150, 120]));
    let sliver = RgbImage::from_pixel(1000, 1, image::Rgb([200, 150, 120]));
    for frame in [blank, one_pixel, sliver] {
        for mode in [TrackingMode::Static, TrackingMode::Video] {
            let faces = FaceTracker::new(mode).process(&mesh, &frame).unwrap();
            assert!(faces.is_empty(), "{:?}", frame.dimensions());
        }
    }
}

#[test]
fn video_mode_tracks_like_mediapipe_detecting_once_on_cpu() {
    let models = cpu_models();
    let case = case("carphone_video");
    let tracked = check("cpu", &models, &case, &carphone_640x480());
    // MediaPipe kept the face in every frame, so it detected once; so must we.
    assert!(case.faces_per_frame.iter().all(|&n| n == 1));
    assert_eq!(tracked.tracker.detector_runs(), 1);
    assert_blinks_match_the_seed_reference("cpu", "carphone_blinks.json", &tracked.faces);
}

/// Streams processed together (one detector batch, one landmark batch per step) give what
/// each gives alone: batching across sessions changes nothing in the answers.
#[test]
fn streams_batched_together_match_streams_run_alone() {
    let models = cpu_models();
    let mesh = FaceMesh::new(&models, FaceMeshOptions::default());
    let carphone = carphone_640x480();
    let astronaut = astronaut().remove(0);
    let (mut video, mut photo) = (
        FaceTracker::new(TrackingMode::Video),
        FaceTracker::new(TrackingMode::Static),
    );
    let (mut video_alone, mut photo_alone) = (
        FaceTracker::new(TrackingMode::Video),
        FaceTracker::new(TrackingMode::Static),
    );
    for frame in &carphone[..20] {
        let together =
            process_batch(&mesh, &mut [(&mut video, frame), (&mut photo, &astronaut)]).unwrap();
        let alone = [
            video_alone.process(&mesh, frame).unwrap(),
            photo_alone.process(&mesh, &astronaut).unwrap(),
        ];
        for (batched, single) in together.iter().zip(&alone) {
            assert_eq!(batched.len(), single.len());
            for (a, b) in batched.iter().zip(single) {
                let (mean, worst) = errors(a, &b.points);
                assert!(worst < 1e-3, "mean {mean}, worst {worst}");
            }
        }
    }
    assert_eq!((video.detector_runs(), photo.detector_runs()), (1, 20));
}

/// Batches padded to a power of two (as the server does on a GPU) answer as unpadded ones.
#[test]
fn padded_batches_give_the_same_faces() {
    let models = cpu_models();
    let plain = FaceMesh::new(&models, FaceMeshOptions::default());
    let options = FaceMeshOptions {
        padded_batches_up_to: Some(8),
        ..FaceMeshOptions::default()
    };
    let padded = FaceMesh::new(&models, options);
    let frames = carphone_640x480();
    let three: Vec<&RgbImage> = frames[..3].iter().collect();
    let (a, b) = (
        plain.detect(&three).unwrap(),
        padded.detect(&three).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!(
            (x.score - y.score).abs() < 1e-5 && (x.x_min - y.x_min).abs() < 1e-5,
            "{x:?} {y:?}"
        );
    }
    padded.warm_up().unwrap();
}

#[test]
fn video_mode_matches_mediapipe_on_wgpu() {
    let device = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
    let models = FaceModels::load(device, &ModelOptions::default()).unwrap();
    let tracked = check(
        "wgpu",
        &models,
        &case("carphone_video"),
        &carphone_640x480(),
    );
    assert_eq!(tracked.tracker.detector_runs(), 1);
    assert_blinks_match_the_seed_reference("wgpu", "carphone_blinks.json", &tracked.faces);
    check("wgpu", &models, &case("astronaut_static"), &astronaut());
}

/// With the crop shader cutting the detector's and the landmark model's inputs on the GPU
/// (`--gpu-crop`), the pipeline still gives MediaPipe's answers: the shader and the CPU crop
/// differ by at most one level in a handful of bytes (`tests/shaders.rs`).
#[test]
fn device_crops_match_mediapipe_on_wgpu() {
    let device = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
    let models = FaceModels::load(device, &ModelOptions::default()).unwrap();
    let video = case("carphone_video");
    let tracked = check_cropping("wgpu, gpu crop", &models, &video, &carphone_640x480(), true);
    assert_eq!(tracked.tracker.detector_runs(), 1);
    assert_blinks_match_the_seed_reference(
        "wgpu, gpu crop",
        "carphone_blinks.json",
        &tracked.faces,
    );
    check_cropping(
        "wgpu, gpu crop",
        &models,
        &case("astronaut_static"),
        &astronaut(),
        true,
    );
}

/// On wgpu the region patches are cut by `shaders/transform_tensor_bilinear.wgsl`, not by the
/// host implementation the CPU runs: this holds that path to MediaPipe too.
#[test]
fn refined_landmarks_match_mediapipe_on_wgpu() {
    let device = ComputeDevice::gpu().expect("wgpu needs an adapter: install mesa-vulkan-drivers");
    let models = refining(device);
    check(
        "wgpu",
        &models,
        &case("astronaut_static_refined"),
        &astronaut(),
    );
    let tracked = check(
        "wgpu",
        &models,
        &case("carphone_video_refined"),
        &carphone_640x480(),
    );
    assert_eq!(tracked.tracker.detector_runs(), 1);
    assert_blinks_match_the_seed_reference("wgpu", "carphone_blinks_refined.json", &tracked.faces);
}

/// The landmark crops of the model fixtures were cut by OpenCV from these same images, with
/// the ROI recorded in the manifest: our crop must give the same bytes.
#[test]
fn the_cpu_crop_equals_mediapipes_opencv_warp() {
    #[derive(Deserialize)]
    struct ModelCase {
        name: String,
        input: String,
        roi: Option<Roi>,
    }
    #[derive(Deserialize)]
    struct Roi {
        x_center: f32,
        y_center: f32,
        width: f32,
        height: f32,
        rotation: f32,
    }
    let mut carphone = carphone_frames().unwrap();
    let mut checked = 0;
    for case in manifest_cases::<ModelCase>("manifest.json") {
        let Some(roi) = case.roi else { continue };
        let source = match case.name.strip_prefix("carphone_") {
            Some(rest) => {
                let index: usize = rest[..3].parse().unwrap();
                std::mem::take(&mut carphone[index])
            }
            None => astronaut().remove(0),
        };
        let rect = PixelRect {
            x_center: roi.x_center,
            y_center: roi.y_center,
            width: roi.width,
            height: roi.height,
            rotation: roi.rotation,
        };
        let ours = crop(&source, &rect, 192, 192, Border::Replicate);
        let theirs = image::open(fixtures().join(&case.input)).unwrap().to_rgb8();
        let differing = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        let worst = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        eprintln!(
            "crop {}: {differing} of {} bytes differ, by at most {worst}",
            case.name,
            ours.as_raw().len()
        );
        // OpenCV solves the warp's matrix from float corners; a position that lands on a
        // 1/32-pixel rounding boundary can round the other way, moving a byte by one or two.
        assert!(
            worst <= 2 && differing * 1000 <= ours.as_raw().len(),
            "{}",
            case.name
        );
        checked += 1;
    }
    assert!(checked >= 3);
}
