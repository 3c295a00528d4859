//! The two model stages of FaceMesh on whole frames, batched: find faces with the detector, and
//! read a face's landmarks (468, or 478 with the attention model) out of a region of interest. `tracker.rs` decides which stage
//! each frame needs.

use burn::tensor::Tensor;
use image::RgbImage;

use crate::models::description::{DecodingOptions, InputDescription, NonMaxSuppressionOptions};
use crate::models::input::InputError;
use crate::models::{FaceModels, ModelKind, rows_per_item};
use crate::pipeline::anchors::{self, Anchor};
use crate::pipeline::crop::{Border, PixelRect, Placement, model_input};
use crate::pipeline::detection::{Detection, decode, sigmoid, weighted_non_max_suppression};
use crate::pipeline::projection::{detection_to_frame, landmarks_to_frame, letterbox};

/// The thresholds of MediaPipe's `FaceMesh` solution, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceMeshOptions {
    /// Faces to find and track per stream.
    pub max_faces: usize,
    /// Detector score (after sigmoid) from which a face counts as found.
    pub min_detection_confidence: f32,
    /// Face-presence probability below which a tracked face counts as lost.
    pub min_tracking_confidence: f32,
    /// Pad every model batch to a power of two up to this size (see
    /// `padded_batch_size`), so that a GPU compiles its kernels for a few
    /// shapes, once; `None` runs batches as they come (the CPU gains nothing from padding).
    pub padded_batches_up_to: Option<usize>,
    /// Cut the model inputs out of the frames on the GPU (`shaders/crop.wgsl`: the frames'
    /// bytes go up, the crops never exist on the host) instead of on the CPU. Ignored on the
    /// CPU backend.
    pub crop_on_device: bool,
}

impl FaceMeshOptions {
    /// Where the crops of a batch are cut and how it is padded: the mesh's rule, which the
    /// other models' crops follow.
    pub fn placement(&self) -> Placement {
        Placement {
            padded_batches_up_to: self.padded_batches_up_to,
            on_device: self.crop_on_device,
        }
    }
}

impl Default for FaceMeshOptions {
    fn default() -> Self {
        Self {
            max_faces: 1,
            min_detection_confidence: 0.5,
            min_tracking_confidence: 0.5,
            padded_batches_up_to: None,
            crop_on_device: false,
        }
    }
}

/// One face's landmarks in frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceLandmarks {
    /// Face-presence probability from the landmark model.
    pub presence: f32,
    /// 468 points (478 with irises): x, y in frame pixels, z in the same scale as x (smaller
    /// is nearer).
    pub points: Vec<[f32; 3]>,
}

impl FaceLandmarks {
    /// The box around the points, as (x, y, width, height) in pixels.
    pub fn bounding_box(&self) -> [f32; 4] {
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &[x, y, _] in &self.points {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        [x0, y0, x1 - x0, y1 - y0]
    }
}

/// The models plus everything derived from their descriptions once.
pub struct FaceMesh<'m> {
    models: &'m FaceModels,
    anchors: Vec<Anchor>,
    detector_input: InputDescription,
    decoding: DecodingOptions,
    suppression: NonMaxSuppressionOptions,
    landmark_input: InputDescription,
    options: FaceMeshOptions,
}

impl<'m> FaceMesh<'m> {
    pub fn new(models: &'m FaceModels, options: FaceMeshOptions) -> Self {
        let detector = ModelKind::Detector.description();
        Self {
            models,
            anchors: anchors::generate(detector.anchors.as_ref().expect("detector has anchors")),
            detector_input: detector.input,
            decoding: detector.decoding.expect("detector has decoding options"),
            suppression: detector
                .non_max_suppression
                .expect("detector has suppression options"),
            landmark_input: models.landmarker.kind().description().input,
            options,
        }
    }

    pub fn options(&self) -> FaceMeshOptions {
        self.options
    }

    /// Faces in each frame, best first, at most `max_faces`, in normalised frame coordinates.
    pub fn detect(&self, frames: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, InputError> {
        self.in_parts(frames, |frames| self.detect_together(frames))
    }

    /// The landmarks inside each (frame, region) pair, or None where the model says the region
    /// holds no face (presence below `min_tracking_confidence`).
    pub fn landmarks(
        &self,
        regions: &[(&RgbImage, PixelRect)],
    ) -> Result<Vec<Option<FaceLandmarks>>, InputError> {
        self.in_parts(regions, |regions| self.landmarks_together(regions))
    }

    /// Whether the models run a batch's items in one pass (on a GPU) or one by one.
    pub fn runs_items_together(&self) -> bool {
        self.models.device.is_gpu()
    }

    /// Runs `run` over `items` in parts: all at once on the GPU, where one dispatch serves the
    /// batch; one by one on the CPU, where a batch saves nothing and one item's activations
    /// stay in cache through the whole network (BENCHMARKS.md: a batch of 8 costs more per
    /// frame than 8 single frames).
    fn in_parts<T, R>(
        &self,
        items: &[T],
        run: impl Fn(&[T]) -> Result<Vec<R>, InputError>,
    ) -> Result<Vec<R>, InputError> {
        let part = if self.runs_items_together() {
            items.len().max(1)
        } else {
            1
        };
        let mut results = Vec::with_capacity(items.len());
        for items in items.chunks(part) {
            results.extend(run(items)?);
        }
        Ok(results)
    }

    fn detect_together(&self, frames: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, InputError> {
        let boxes: Vec<PixelRect> = frames.iter().map(|f| letterbox(f.dimensions())).collect();
        let regions: Vec<(&RgbImage, PixelRect)> =
            frames.iter().copied().zip(boxes.iter().copied()).collect();
        let input = self.input_tensor(&regions, &self.detector_input, Border::Zero)?;
        let output = self.models.detector.forward(input);
        let regressors = rows_per_item(output.regressors);
        let scores = rows_per_item(output.scores);
        Ok(frames
            .iter()
            .enumerate()
            .map(|(i, frame)| {
                let found = decode(
                    &regressors[i],
                    &scores[i],
                    &self.anchors,
                    &self.decoding,
                    self.options.min_detection_confidence,
                );
                weighted_non_max_suppression(found, &self.suppression)
                    .into_iter()
                    .take(self.options.max_faces)
                    .map(|d| detection_to_frame(&d, &boxes[i], frame.dimensions()))
                    .collect()
            })
            .collect())
    }

    fn landmarks_together(
        &self,
        regions: &[(&RgbImage, PixelRect)],
    ) -> Result<Vec<Option<FaceLandmarks>>, InputError> {
        let input = self.input_tensor(regions, &self.landmark_input, Border::Replicate)?;
        let output = self.models.landmarker.forward(input);
        let (points, presence) = (output.landmarks, output.face_presence);
        let input_size = (self.landmark_input.width, self.landmark_input.height);
        Ok(regions
            .iter()
            .enumerate()
            .map(|(i, (_, rect))| {
                let presence = sigmoid(presence[i][0]);
                (presence >= self.options.min_tracking_confidence).then(|| FaceLandmarks {
                    presence,
                    points: landmarks_to_frame(&points[i], rect, input_size),
                })
            })
            .collect())
    }

    /// The model input `[N, 3, H, W]` for each (frame, region), N padded when padding is on.
    fn input_tensor(
        &self,
        regions: &[(&RgbImage, PixelRect)],
        input: &InputDescription,
        border: Border,
    ) -> Result<Tensor<4>, InputError> {
        model_input(
            regions,
            input,
            border,
            self.options.placement(),
            &self.models.device,
        )
    }

    /// Runs both models once at every padded batch size, so that a GPU has compiled all its
    /// kernels before the first real frame (a no-op without padding).
    pub fn warm_up(&self) -> Result<(), InputError> {
        let Some(max) = self.options.padded_batches_up_to else {
            return Ok(());
        };
        let blank = RgbImage::new(640, 480);
        let region = crate::pipeline::projection::letterbox(blank.dimensions());
        let mut size = 1;
        while size <= max {
            self.detect(&vec![&blank; size])?;
            self.landmarks(&vec![(&blank, region); size])?;
            size *= 2;
        }
        Ok(())
    }
}

/// The batch size to run `count` items at: the next power of two, at most `max_batch`. GPU
/// kernels are compiled per shape, so padding batches to a handful of sizes means each is
/// compiled once (and can be warmed up before the server reports ready).
pub fn padded_batch_size(count: usize, max_batch: usize) -> usize {
    count.max(1).next_power_of_two().min(max_batch.max(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_padded_to_a_few_shapes() {
        let sizes: Vec<usize> = (1..=9).map(|n| padded_batch_size(n, 8)).collect();
        assert_eq!(sizes, [1, 2, 4, 4, 8, 8, 8, 8, 9]);
        assert_eq!(padded_batch_size(0, 8), 1);
        assert_eq!(padded_batch_size(100, 128), 128);
    }
}
