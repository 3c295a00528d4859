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
        Ok(process_batch(mesh, &mut [(self, frame)])?.remove(0))
    }

    /// This frame's regions: the tracked ones (in video mode); and whether the detector must
    /// look for more.
    fn regions_to_search(&mut self, max_faces: usize) -> (Vec<Roi>, bool) {
        let regions = match self.mode {
            TrackingMode::Video => std::mem::take(&mut self.tracked),
            TrackingMode::Static => Vec::new(),
        };
        let needs_detection = regions.len() < max_faces;
        (regions, needs_detection)
    }

    /// Remembers where this frame's faces are, for the next frame.
    fn track(&mut self, faces: &[FaceLandmarks], (width, height): (u32, u32)) {
        self.tracked = faces
            .iter()
            .map(|face| {
                let normalized: Vec<[f32; 2]> = face
                    .points
                    .iter()
                    .map(|p| [p[0] / width as f32, p[1] / height as f32])
                    .collect();
                Roi::from_landmarks(&normalized, (width, height), RoiOptions::default())
            })
            .collect();
    }
}

/// One frame for each of several streams, in two device batches: the detector over the
/// frames that need it, then the landmark model over every region of every frame. This is
/// how frames from many sessions share a dispatch.
pub fn process_batch(
    mesh: &FaceMesh<'_>,
    streams: &mut [(&mut FaceTracker, &RgbImage)],
) -> Result<Vec<Vec<FaceLandmarks>>, InputError> {
    let max_faces = mesh.options().max_faces;
    let mut regions: Vec<Vec<Roi>> = Vec::with_capacity(streams.len());
    let mut to_detect = Vec::new();
    for (index, (tracker, _)) in streams.iter_mut().enumerate() {
        let (tracked, needs_detection) = tracker.regions_to_search(max_faces);
        regions.push(tracked);
        if needs_detection {
            tracker.detector_runs += 1;
            to_detect.push(index);
        }
    }
    let frames: Vec<&RgbImage> = to_detect.iter().map(|&i| streams[i].1).collect();
    for (&index, detections) in to_detect.iter().zip(mesh.detect(&frames)?) {
        let size = streams[index].1.dimensions();
        for detection in &detections {
            let region = Roi::from_detection(detection, size, RoiOptions::default());
            // A tracked face wins over a fresh detection of the same face.
            if !regions[index]
                .iter()
                .any(|tracked| iou(tracked, &region) > SAME_FACE_IOU)
            {
                regions[index].push(region);
            }
        }
    }
    let crops: Vec<_> = streams
        .iter()
        .zip(&regions)
        .flat_map(|((_, frame), rois)| {
            let size = frame.dimensions();
            rois.iter()
                .map(move |roi| (*frame, roi_to_pixels(roi, size)))
        })
        .collect();
    let mut landmarks = mesh.landmarks(&crops)?.into_iter();
    let mut results = Vec::with_capacity(streams.len());
    for ((tracker, frame), rois) in streams.iter_mut().zip(&regions) {
        let faces: Vec<FaceLandmarks> = landmarks.by_ref().take(rois.len()).flatten().collect();
        tracker.track(&faces, frame.dimensions());
        results.push(faces);
    }
    Ok(results)
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
