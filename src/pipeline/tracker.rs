//! Carrying faces from one frame to the next, as MediaPipe's `face_landmark_front_cpu.pbtxt`
//! does: while enough faces are tracked, each frame's regions come from the previous frame's
//! landmarks and the detector does not run; it runs again only when faces are missing.

use image::RgbImage;

use crate::models::input::InputError;
use crate::pipeline::face_mesh::{FaceLandmarks, FaceMesh};
use crate::pipeline::projection::roi_to_pixels;
use crate::pipeline::roi::{Roi, RoiOptions};

/// Whether frames form a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingMode {
    /// Consecutive frames of one camera: track (MediaPipe's `static_image_mode=False`).
    Video,
    /// Unrelated images: detect on every one.
    Static,
}

/// Regions whose axis-aligned boxes overlap by more than this IoU are the same face
/// (MediaPipe's `AssociationNormRectCalculator`, `min_similarity_threshold: 0.5`).
const SAME_FACE_IOU: f32 = 0.5;

/// One stream's tracking state.
#[derive(Debug)]
pub struct FaceTracker {
    mode: TrackingMode,
    /// Regions for the next frame, from this frame's landmarks.
    tracked: Vec<Roi>,
    detector_runs: usize,
}

impl FaceTracker {
    pub fn new(mode: TrackingMode) -> Self {
        Self {
            mode,
            tracked: Vec::new(),
            detector_runs: 0,
        }
    }

    /// How many frames needed the detector so far.
    pub fn detector_runs(&self) -> usize {
        self.detector_runs
    }

    /// The faces in `frame`, updating the regions tracked into the next one.
    pub fn process(
        &mut self,
        mesh: &FaceMesh<'_>,
        frame: &RgbImage,
    ) -> Result<Vec<FaceLandmarks>, InputError> {
        let size = frame.dimensions();
        let mut regions = match self.mode {
            TrackingMode::Video => std::mem::take(&mut self.tracked),
            TrackingMode::Static => Vec::new(),
        };
        if regions.len() < mesh.options().max_faces {
            self.detector_runs += 1;
            let detections = mesh.detect(&[frame])?.pop().unwrap_or_default();
            for detection in &detections {
                let region = Roi::from_detection(detection, size, RoiOptions::default());
                // A tracked face wins over a fresh detection of the same face.
                if !regions
                    .iter()
                    .any(|tracked| iou(tracked, &region) > SAME_FACE_IOU)
                {
                    regions.push(region);
                }
            }
        }
        let crops: Vec<_> = regions
            .iter()
            .map(|roi| (frame, roi_to_pixels(roi, size)))
            .collect();
        let faces: Vec<FaceLandmarks> = mesh.landmarks(&crops)?.into_iter().flatten().collect();
        let (width, height) = (size.0 as f32, size.1 as f32);
        self.tracked = faces
            .iter()
            .map(|face| {
                let normalized: Vec<[f32; 2]> = face
                    .points
                    .iter()
                    .map(|p| [p[0] / width, p[1] / height])
                    .collect();
                Roi::from_landmarks(&normalized, size, RoiOptions::default())
            })
            .collect();
        Ok(faces)
    }
}

/// IoU of two regions' axis-aligned boxes (rotation ignored, as MediaPipe's association does).
fn iou(a: &Roi, b: &Roi) -> f32 {
    let overlap = |ca: f32, sa: f32, cb: f32, sb: f32| {
        ((ca + sa / 2.0).min(cb + sb / 2.0) - (ca - sa / 2.0).max(cb - sb / 2.0)).max(0.0)
    };
    let intersection = overlap(a.x_center, a.width, b.x_center, b.width)
        * overlap(a.y_center, a.height, b.y_center, b.height);
    let union = a.width * a.height + b.width * b.height - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}
