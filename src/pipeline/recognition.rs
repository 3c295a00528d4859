//! Faces to templates: `alignment` warps a face found by FaceMesh onto the recognition
//! model's template, and the recognition model makes its template. `Recognition` is that step
//! for faces already found (the engine's stage); `FaceRecognition` adds FaceMesh in front, for
//! whole images (the `embed` and `compare` commands).

use image::RgbImage;

use crate::device::ComputeDevice;
use crate::matching::Template;
use crate::models::description::{InputDescription, ModelKind};
use crate::models::input::{InputError, images_to_tensor};
use crate::models::{FaceModels, FaceRecognizer, rows_per_item};
use crate::pipeline::alignment::{self, five_points};
use crate::pipeline::face_mesh::{FaceLandmarks, FaceMesh, FaceMeshOptions, padded_batch_size};
use crate::pipeline::tracker::{FaceTracker, TrackingMode};

/// Eyes closer than this in the frame would be enlarged more than twice onto the template
/// (35 pixels apart there): too little of the face is left to tell people apart.
pub const MIN_EYE_DISTANCE: f32 = 17.5;

/// Why a face found in a frame gets no template.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum FaceProblem {
    #[error(
        "the face is too small to recognise: its eyes are {eye_distance:.1} pixels apart, at \
         least {MIN_EYE_DISTANCE} are needed"
    )]
    TooSmall { eye_distance: f32 },
}

/// Alignment and the recognition model, for faces already found.
pub struct Recognition<'m> {
    recognizer: &'m FaceRecognizer,
    device: &'m ComputeDevice,
    template: alignment::Template,
    input: InputDescription,
    /// On a GPU, which compiles kernels per batch shape, batches are padded with blank crops
    /// to the same few sizes as the mesh's (`face_mesh::padded_batch_size`), up to this one.
    padded_batches_up_to: Option<usize>,
}

impl<'m> Recognition<'m> {
    pub fn new(
        recognizer: &'m FaceRecognizer,
        device: &'m ComputeDevice,
        padded_batches_up_to: Option<usize>,
    ) -> Self {
        Self {
            recognizer,
            device,
            template: alignment::Template::for_model(),
            input: ModelKind::Recognition.description().input,
            padded_batches_up_to,
        }
    }

    /// Runs every padded batch size once, so that a GPU compiles their kernels before the
    /// first frame (nothing to do without padding).
    pub fn warm_up(&self) -> Result<(), InputError> {
        let Some(max_batch) = self.padded_batches_up_to else {
            return Ok(());
        };
        let blank = RgbImage::new(self.input.width as u32, self.input.height as u32);
        let mut size = 1;
        while size <= max_batch.max(1) {
            let padded = padded_batch_size(size, max_batch);
            self.templates(&vec![&blank; padded])?;
            size = padded + 1;
        }
        Ok(())
    }

    /// `face` of `frame` warped onto the model's template, unless it is too small.
    pub fn align(&self, frame: &RgbImage, face: &FaceLandmarks) -> Result<RgbImage, FaceProblem> {
        let points = five_points(&face.points);
        let eye_distance = (points[0][0] - points[1][0]).hypot(points[0][1] - points[1][1]);
        match self.template.transform(&points) {
            Some(transform) if eye_distance >= MIN_EYE_DISTANCE => {
                Ok(self.template.warp(frame, &transform))
            }
            _ => Err(FaceProblem::TooSmall { eye_distance }),
        }
    }

    /// The templates of aligned faces, in one batch.
    pub fn templates(&self, aligned: &[&RgbImage]) -> Result<Vec<Template>, InputError> {
        let count = aligned.len();
        let padded = self
            .padded_batches_up_to
            .map_or(count, |max_batch| padded_batch_size(count, max_batch));
        let input = if padded > count {
            let blank = RgbImage::new(self.input.width as u32, self.input.height as u32);
            let mut batch = aligned.to_vec();
            batch.resize(padded, &blank);
            images_to_tensor(&batch, &self.input, &self.device.device)?
        } else {
            images_to_tensor(aligned, &self.input, &self.device.device)?
        };
        Ok(rows_per_item(self.recognizer.forward(input))
            .iter()
            .take(count)
            .map(|row| {
                Template::from_embedding(row).expect("the model's outputs are 128 finite numbers")
            })
            .collect())
    }

    /// The template of each face that can have one, in one batch of the aligned ones.
    pub fn templates_of(
        &self,
        faces: &[(&RgbImage, &FaceLandmarks)],
    ) -> Result<Vec<Result<Template, FaceProblem>>, InputError> {
        let aligned: Vec<Result<RgbImage, FaceProblem>> = faces
            .iter()
            .map(|(frame, face)| self.align(frame, face))
            .collect();
        let crops: Vec<&RgbImage> = aligned.iter().filter_map(|a| a.as_ref().ok()).collect();
        let mut templates = if crops.is_empty() {
            Vec::new()
        } else {
            self.templates(&crops)?
        }
        .into_iter();
        Ok(aligned
            .into_iter()
            .map(|aligned| {
                aligned.map(|_| templates.next().expect("one template per aligned face"))
            })
            .collect())
    }
}

/// One face found in an image, with its template or why it has none.
#[derive(Debug, Clone)]
pub struct RecognizedFace {
    /// (x, y, width, height) in image pixels, around the mesh.
    pub bounding_box: [f32; 4],
    pub template: Result<Template, FaceProblem>,
}

/// FaceMesh, then `Recognition`, on whole images.
pub struct FaceRecognition<'m> {
    mesh: FaceMesh<'m>,
    recognition: Recognition<'m>,
}

impl<'m> FaceRecognition<'m> {
    /// `models` must hold the recognition model (`FaceModels::with_recognizer`).
    pub fn new(models: &'m FaceModels, max_faces: usize) -> Self {
        let options = FaceMeshOptions {
            max_faces,
            ..FaceMeshOptions::default()
        };
        let recognizer = models
            .recognizer
            .as_ref()
            .expect("FaceRecognition needs FaceModels::with_recognizer");
        Self {
            mesh: FaceMesh::new(models, options),
            recognition: Recognition::new(recognizer, &models.device, None),
        }
    }

    /// Every face in `frame` (at most `max_faces`, best first), each with its template.
    pub fn faces(&self, frame: &RgbImage) -> Result<Vec<RecognizedFace>, InputError> {
        let faces = FaceTracker::new(TrackingMode::Static).process(&self.mesh, frame)?;
        let pairs: Vec<(&RgbImage, &FaceLandmarks)> = faces.iter().map(|f| (frame, f)).collect();
        let templates = self.recognition.templates_of(&pairs)?;
        Ok(faces
            .iter()
            .zip(templates)
            .map(|(face, template)| RecognizedFace {
                bounding_box: face.bounding_box(),
                template,
            })
            .collect())
    }

    /// The templates of faces already aligned onto the model's template, in one batch.
    pub fn templates(&self, aligned: &[&RgbImage]) -> Result<Vec<Template>, InputError> {
        self.recognition.templates(aligned)
    }
}
