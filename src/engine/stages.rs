//! What the engine runs on a batch of frames, stage after stage: the face mesh (the detector
//! where a stream has lost its face, then the landmark model on every tracked region; see
//! `pipeline::tracker`), then the measures of each frame's first face, taken while its pixels
//! are at hand, then the templates of the first faces of the frames that want one: aligned
//! and run through the recognition model as one batch of their own, after the mesh's; and the
//! anti-spoofing scores of the first faces of the frames that want one, likewise.

use image::RgbImage;

use crate::liveness::pose::{HeadPose, head_pose};
use crate::liveness::quality::{self, Quality, QualityRules};
use crate::matching::Template;
use crate::models::FaceModels;
use crate::models::input::InputError;
use crate::pipeline::anti_spoofing::SpoofCheck;
use crate::pipeline::face_mesh::{FaceLandmarks, FaceMesh, FaceMeshOptions};
use crate::pipeline::recognition::{FaceProblem, Recognition};
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
    pub template: Option<Result<Template, FaceProblem>>,
    /// The first face's anti-spoofing score (0 spoof .. 1 real).
    pub spoof_score: Option<f32>,
}

/// One frame of one stream, for the stages: its tracker, its pixels, whether its first face
/// needs a template and an anti-spoofing score.
pub struct StageInput<'a> {
    pub tracker: &'a mut FaceTracker,
    pub frame: &'a RgbImage,
    pub wants_template: bool,
    pub wants_spoof_score: bool,
}

/// The stages, built once per worker.
pub struct Stages<'m> {
    mesh: FaceMesh<'m>,
    /// Present when the engine runs with the recognition model.
    recognition: Option<Recognition<'m>>,
    /// Present when the engine runs with the anti-spoofing model.
    spoof_check: Option<SpoofCheck<'m>>,
}

impl<'m> Stages<'m> {
    pub fn new(models: &'m FaceModels, options: FaceMeshOptions) -> Self {
        Self {
            mesh: FaceMesh::new(models, options),
            recognition: models.recognizer.as_ref().map(|recognizer| {
                Recognition::new(recognizer, &models.device, options.padded_batches_up_to)
            }),
            spoof_check: models
                .anti_spoofing
                .as_ref()
                .map(|detector| SpoofCheck::new(detector, &models.device, options.placement())),
        }
    }

    /// Compiles the models' kernels for every batch shape they will see (a GPU's; a no-op on
    /// the CPU).
    pub fn warm_up(&self) -> Result<(), InputError> {
        self.mesh.warm_up()?;
        if let Some(recognition) = &self.recognition {
            recognition.warm_up()?;
        }
        match &self.spoof_check {
            Some(spoof_check) => spoof_check.warm_up(),
            None => Ok(()),
        }
    }

    /// Whether a batch's frames run through the models in one pass (on a GPU) or one by one.
    pub fn runs_items_together(&self) -> bool {
        self.mesh.runs_items_together()
    }

    /// One frame of each stream, through every stage.
    pub fn run(&self, inputs: &mut [StageInput<'_>]) -> Result<Vec<FrameFaces>, InputError> {
        let mut streams: Vec<(&mut FaceTracker, &RgbImage)> = inputs
            .iter_mut()
            .map(|input| (&mut *input.tracker, input.frame))
            .collect();
        let faces = process_batch(&self.mesh, &mut streams)?;
        drop(streams);
        let templates = self.templates(inputs, &faces)?;
        let first_faces: Vec<Option<FaceMeasures>> = faces
            .iter()
            .zip(inputs.iter())
            .map(|(faces, input)| {
                faces
                    .first()
                    .map(|face| measure(input.frame, face, faces.len()))
            })
            .collect();
        let spoof_scores = self.spoof_scores(inputs, &first_faces)?;
        Ok(faces
            .into_iter()
            .zip(first_faces)
            .zip(templates.into_iter().zip(spoof_scores))
            .map(
                |((faces, first_face), (template, spoof_score))| FrameFaces {
                    first_face,
                    template,
                    spoof_score,
                    faces,
                },
            )
            .collect())
    }

    /// Per frame, its first face's anti-spoofing score where it wants one and has a face, the
    /// wanted ones run as one batch.
    fn spoof_scores(
        &self,
        inputs: &[StageInput<'_>],
        first_faces: &[Option<FaceMeasures>],
    ) -> Result<Vec<Option<f32>>, InputError> {
        let mut per_frame = vec![None; inputs.len()];
        let Some(spoof_check) = &self.spoof_check else {
            return Ok(per_frame);
        };
        let (frames, wanted): (Vec<usize>, Vec<(&RgbImage, [f32; 4])>) = inputs
            .iter()
            .zip(first_faces)
            .enumerate()
            .filter(|(_, (input, _))| input.wants_spoof_score)
            .filter_map(|(index, (input, face))| {
                Some((index, (input.frame, face.as_ref()?.face_box)))
            })
            .unzip();
        for (index, score) in frames.into_iter().zip(spoof_check.scores(&wanted)?) {
            per_frame[index] = Some(score);
        }
        Ok(per_frame)
    }

    /// Per frame, its first face's template where it wants one and has a face, the wanted
    /// ones run as one batch.
    fn templates(
        &self,
        inputs: &[StageInput<'_>],
        faces: &[Vec<FaceLandmarks>],
    ) -> Result<Vec<Option<Result<Template, FaceProblem>>>, InputError> {
        let mut per_frame = vec![None; inputs.len()];
        let Some(recognition) = &self.recognition else {
            return Ok(per_frame);
        };
        let (frames, wanted): (Vec<usize>, Vec<(&RgbImage, &FaceLandmarks)>) = inputs
            .iter()
            .zip(faces)
            .enumerate()
            .filter(|(_, (input, _))| input.wants_template)
            .filter_map(|(index, (input, faces))| Some((index, (input.frame, faces.first()?))))
            .unzip();
        for (index, template) in frames.into_iter().zip(recognition.templates_of(&wanted)?) {
            per_frame[index] = Some(template);
        }
        Ok(per_frame)
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
