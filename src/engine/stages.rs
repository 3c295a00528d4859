//! What the engine runs on a batch of frames, stage after stage: the face mesh (the detector
//! where a stream has lost its face, then the landmark model on every tracked region; see
//! `pipeline::tracker`), then the measures of each frame's first face, taken while its pixels
//! are at hand. Identity and anti-spoofing stages come after these.

use image::RgbImage;

use crate::liveness::pose::{HeadPose, head_pose};
use crate::liveness::quality::{self, Quality, QualityRules};
use crate::models::FaceModels;
use crate::models::input::InputError;
use crate::pipeline::face_mesh::{FaceLandmarks, FaceMesh, FaceMeshOptions};
use crate::pipeline::tracker::{FaceTracker, process_batch};

/// The first face's box, head pose, and the frame's quality around it.
#[derive(Debug, Clone)]
pub struct FaceMeasures {
    pub face_box: [f32; 4],
    pub pose: HeadPose,
    pub quality: Quality,
}

/// What the stages found in one frame.
pub struct FrameFaces {
    pub faces: Vec<FaceLandmarks>,
    pub first_face: Option<FaceMeasures>,
}

/// The stages, built once per worker.
pub struct Stages<'m> {
    mesh: FaceMesh<'m>,
}

impl<'m> Stages<'m> {
    pub fn new(models: &'m FaceModels, options: FaceMeshOptions) -> Self {
        Self {
            mesh: FaceMesh::new(models, options),
        }
    }

    /// Compiles the models' kernels for every batch shape they will see (a GPU's; a no-op on
    /// the CPU).
    pub fn warm_up(&self) -> Result<(), InputError> {
        self.mesh.warm_up()
    }

    /// Whether a batch's frames run through the models in one pass (on a GPU) or one by one.
    pub fn runs_items_together(&self) -> bool {
        self.mesh.runs_items_together()
    }

    /// One frame of each stream, through every stage.
    pub fn run(
        &self,
        streams: &mut [(&mut FaceTracker, &RgbImage)],
    ) -> Result<Vec<FrameFaces>, InputError> {
        let faces = process_batch(&self.mesh, streams)?;
        Ok(faces
            .into_iter()
            .zip(streams.iter())
            .map(|(faces, (_, frame))| FrameFaces {
                first_face: faces.first().map(|face| measure(frame, face, faces.len())),
                faces,
            })
            .collect())
    }
}

fn measure(frame: &RgbImage, face: &FaceLandmarks, faces: usize) -> FaceMeasures {
    let face_box = face.bounding_box();
    let pose = head_pose(&face.points).unwrap_or_default();
    let quality = quality::assess(frame, face_box, faces, pose, &QualityRules::default());
    FaceMeasures {
        face_box,
        pose,
        quality,
    }
}
