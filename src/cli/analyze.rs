//! `face-service analyze`: face meshes found in images, one JSON line per image.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::{AnyError, ModelArgs};
use crate::frame;
use crate::overlay::draw_faces;
use crate::pipeline::anti_spoofing::SpoofCheck;
use crate::pipeline::crop::Placement;
use crate::pipeline::face_mesh::{FaceMesh, FaceMeshOptions};
use crate::pipeline::tracker::{FaceTracker, TrackingMode};

/// What to look for, and in which images.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Faces to find per image (the seed runs one).
    #[arg(long, default_value_t = 1)]
    pub max_num_faces: usize,
    /// Treat every image on its own, running the detector on each (the default).
    #[arg(long, conflicts_with = "video")]
    pub r#static: bool,
    /// Treat the images as consecutive frames of one stream: track faces from frame to
    /// frame, running the detector only when a face is missing.
    #[arg(long)]
    pub video: bool,
    /// Draw the landmarks and box over each image into this PNG (with several images,
    /// `-N` is added before the extension).
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Judge each face with the anti-spoofing networks: adds its `anti_spoofing_score` (0
    /// spoof .. 1 real) and `real` (the score against the model's threshold).
    #[arg(long)]
    pub anti_spoofing: bool,
    /// The images (JPEG or PNG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Prints one JSON line per image; an image that cannot be read gets a line with its error,
/// and the command fails at the end if any did.
pub fn run(args: AnalyzeArgs, models: &ModelArgs) -> Result<(), AnyError> {
    let models = &if args.anti_spoofing {
        models.load()?.with_anti_spoofing(&models.options())?
    } else {
        models.load()?
    };
    let spoof_check = models
        .anti_spoofing
        .as_ref()
        .map(|detector| SpoofCheck::new(detector, &models.device, Placement::default()));
    let mode = if args.video {
        TrackingMode::Video
    } else {
        TrackingMode::Static
    };
    let (overlay, images) = (args.overlay.as_deref(), &args.images);
    let max_faces = args.max_num_faces;
    let options = FaceMeshOptions {
        max_faces,
        ..FaceMeshOptions::default()
    };
    let mesh = FaceMesh::new(models, options);
    let mut tracker = FaceTracker::new(mode);
    let mut failures = 0;
    for (index, path) in images.iter().enumerate() {
        let frame = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                frame::decode(&bytes, frame::DEFAULT_MAX_SIDE).map_err(|e| e.to_string())
            });
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                failures += 1;
                println!("{}", json!({ "image": path, "error": error }));
                continue;
            }
        };
        let faces = tracker.process(&mesh, &frame)?;
        let spoof_scores = match &spoof_check {
            Some(check) => {
                let boxes: Vec<_> = faces.iter().map(|f| (&frame, f.bounding_box())).collect();
                check.scores(&boxes)?.into_iter().map(Some).collect()
            }
            None => vec![None; faces.len()],
        };
        let described: Vec<_> = faces
            .iter()
            .zip(spoof_scores)
            .map(|(face, spoof_score)| {
                let mut described = json!({
                    "score": face.presence,
                    "bbox": face.bounding_box(),
                    "landmarks": face.points,
                });
                if let (Some(score), Some(check)) = (spoof_score, &spoof_check) {
                    described["anti_spoofing_score"] = json!(score);
                    described["real"] = json!(score >= check.real_threshold());
                }
                described
            })
            .collect();
        println!(
            "{}",
            json!({ "image": path, "width": frame.width(), "height": frame.height(), "faces": described })
        );
        if let Some(overlay) = overlay {
            let target = numbered(overlay, index, images.len());
            draw_faces(&frame, &faces).save(&target)?;
        }
    }
    tracing::info!(
        detector_runs = tracker.detector_runs(),
        images = images.len(),
        "analyzed"
    );
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} of {} images could not be read", images.len()).into()),
    }
}

/// `out.png` for a single image, `out-3.png` for the third of several.
fn numbered(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_owned();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let extension = path
        .extension()
        .map_or("png".into(), |e| e.to_string_lossy());
    path.with_file_name(format!("{stem}-{}.{extension}", index + 1))
}
