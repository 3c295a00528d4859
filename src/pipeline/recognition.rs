//! Faces in a frame to templates: FaceMesh finds each face's landmarks, `alignment` warps the
//! face onto the recognition model's template, the recognition model makes its template.

use image::RgbImage;
use serde::Serialize;

use crate::matching::Template;
use crate::models::description::{InputDescription, ModelKind};
use crate::models::input::{InputError, images_to_tensor};
use crate::models::{FaceModels, FaceRecognizer, rows_per_item};
use crate::pipeline::alignment::{self, five_points};
use crate::pipeline::face_mesh::{FaceMesh, FaceMeshOptions};
use crate::pipeline::tracker::{FaceTracker, TrackingMode};

/// Eyes closer than this in the frame would be enlarged more than twice onto the template
/// (35 pixels apart there): too little of the face is left to tell people apart.
pub const MIN_EYE_DISTANCE: f32 = 17.5;

/// One face found in a frame, with its template or why it has none.
#[derive(Debug, Clone)]
pub struct RecognizedFace {
    /// (x, y, width, height) in frame pixels, around the mesh.
    pub bounding_box: [f32; 4],
    pub template: Result<Template, FaceProblem>,
}

/// Why a face found in a frame gets no template.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, thiserror::Error)]
pub enum FaceProblem {
    #[error(
        "the face is too small to recognise: its eyes are {eye_distance:.1} pixels apart, at \
         least {MIN_EYE_DISTANCE} are needed"
    )]
    TooSmall { eye_distance: f32 },
}

pub struct FaceRecognition<'m> {
    mesh: FaceMesh<'m>,
    models: &'m FaceModels,
    recognizer: &'m FaceRecognizer,
    template: alignment::Template,
    input: InputDescription,
}

impl<'m> FaceRecognition<'m> {
    pub fn new(models: &'m FaceModels, recognizer: &'m FaceRecognizer, max_faces: usize) -> Self {
        let options = FaceMeshOptions {
            max_faces,
            ..FaceMeshOptions::default()
        };
        Self {
            mesh: FaceMesh::new(models, options),
            models,
            recognizer,
            template: alignment::Template::for_model(),
            input: ModelKind::Recognition.description().input,
        }
    }

    /// Every face in `frame` (at most `max_faces`, best first), each with its template.
    pub fn faces(&self, frame: &RgbImage) -> Result<Vec<RecognizedFace>, InputError> {
        let faces = FaceTracker::new(TrackingMode::Static).process(&self.mesh, frame)?;
        let mut found = Vec::with_capacity(faces.len());
        let mut aligned = Vec::new();
        for face in &faces {
            let points = five_points(&face.points);
            let eye_distance = (points[0][0] - points[1][0]).hypot(points[0][1] - points[1][1]);
            let template = match self.template.transform(&points) {
                Some(transform) if eye_distance >= MIN_EYE_DISTANCE => {
                    aligned.push(self.template.warp(frame, &transform));
                    Ok(())
                }
                _ => Err(FaceProblem::TooSmall { eye_distance }),
            };
            found.push((face.bounding_box(), template));
        }
        let mut templates = if aligned.is_empty() {
            Vec::new()
        } else {
            self.templates(&aligned.iter().collect::<Vec<_>>())?
        }
        .into_iter();
        Ok(found
            .into_iter()
            .map(|(bounding_box, template)| RecognizedFace {
                bounding_box,
                template: template
                    .map(|()| templates.next().expect("one template per aligned face")),
            })
            .collect())
    }

    /// The templates of faces already aligned onto the model's template, in one batch.
    pub fn templates(&self, aligned: &[&RgbImage]) -> Result<Vec<Template>, InputError> {
        let input = images_to_tensor(aligned, &self.input, &self.models.device.device)?;
        Ok(rows_per_item(self.recognizer.forward(input))
            .iter()
            .map(|row| {
                Template::from_embedding(row).expect("the model's outputs are 128 finite numbers")
            })
            .collect())
    }
}
