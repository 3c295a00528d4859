//! The face networks as burn modules, built from their published weight files: MediaPipe's
//! detector and landmark models, SFace for recognition, and MiniFASNet for anti-spoofing.

pub mod anti_spoofing;
pub mod attention;
pub mod description;
pub mod detector;
pub mod folding;
pub mod fused;
pub mod head;
pub mod input;
pub mod landmarks;
pub mod layers;
pub mod recognizer;
pub mod weights;

use burn::module::Module;
use burn::tensor::{Tensor, Transaction};

pub use anti_spoofing::SpoofDetector;
pub use attention::FaceLandmarkerWithAttention;
pub use description::{ModelDescription, ModelKind};
pub use detector::{DetectorOutput, FaceDetector};
pub use landmarks::{FaceLandmarker, LandmarkOutput};
pub use recognizer::FaceRecognizer;
pub use weights::{WeightError, WeightFile, WeightSource};

use crate::device::ComputeDevice;

/// Where to read weights from, whether to insist on MediaPipe's exact files, and which
/// landmark model to run.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub weights: WeightSource,
    pub verify_checksum: bool,
    /// MediaPipe's `refine_landmarks`: the attention model's 478 points with irises instead
    /// of the 468-point mesh.
    pub refine_landmarks: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            weights: WeightSource::Embedded,
            verify_checksum: true,
            refine_landmarks: false,
        }
    }
}

/// The landmark model in use: both take a 192x192 face crop and answer points in its pixels.
// One is loaded per process and shared by reference; boxing the larger would only add a
// pointer to follow on every frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Landmarker {
    /// 468 points.
    Mesh(FaceLandmarker),
    /// 478 points: the mesh with refined lips and eyes, and the irises.
    WithAttention(FaceLandmarkerWithAttention),
}

impl Landmarker {
    pub fn forward(&self, input: Tensor<4>) -> LandmarkOutput {
        match self {
            Self::Mesh(model) => model.forward(input),
            Self::WithAttention(model) => model.forward(input),
        }
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            Self::Mesh(_) => ModelKind::Landmarks,
            Self::WithAttention(_) => ModelKind::LandmarksWithAttention,
        }
    }
}

/// The detector and the landmark model, and the recognition and anti-spoofing models where
/// sessions have an identity step, loaded once onto one device. A clone shares the loaded
/// weights.
#[derive(Debug, Clone)]
pub struct FaceModels {
    pub device: ComputeDevice,
    pub detector: FaceDetector,
    pub landmarker: Landmarker,
    pub recognizer: Option<FaceRecognizer>,
    pub anti_spoofing: Option<SpoofDetector>,
}

impl FaceModels {
    pub fn load(device: ComputeDevice, options: &ModelOptions) -> Result<Self, WeightError> {
        let weights = |kind| WeightFile::load(kind, &options.weights, options.verify_checksum);
        let detector = FaceDetector::load(&weights(ModelKind::Detector)?, &device.device)?;
        let landmarker = if options.refine_landmarks {
            Landmarker::WithAttention(FaceLandmarkerWithAttention::load(
                &weights(ModelKind::LandmarksWithAttention)?,
                &device.device,
            )?)
        } else {
            Landmarker::Mesh(FaceLandmarker::load(
                &weights(ModelKind::Landmarks)?,
                &device.device,
            )?)
        };
        Ok(Self {
            device,
            detector,
            landmarker,
            recognizer: None,
            anti_spoofing: None,
        })
    }

    /// The same models with the recognition model loaded beside them.
    pub fn with_recognizer(self, options: &ModelOptions) -> Result<Self, WeightError> {
        let recognizer = load_recognizer(&self.device, options)?;
        Ok(Self {
            recognizer: Some(recognizer),
            ..self
        })
    }

    /// The same models with the anti-spoofing networks loaded beside them.
    pub fn with_anti_spoofing(self, options: &ModelOptions) -> Result<Self, WeightError> {
        let file = WeightFile::load(
            ModelKind::AntiSpoofing,
            &options.weights,
            options.verify_checksum,
        )?;
        let anti_spoofing = SpoofDetector::load(&file, &self.device.device)?;
        Ok(Self {
            anti_spoofing: Some(anti_spoofing),
            ..self
        })
    }

    /// The same models with the recognition and anti-spoofing models beside them: what a
    /// server's identity step runs.
    pub fn with_identity_models(self, options: &ModelOptions) -> Result<Self, WeightError> {
        self.with_recognizer(options)?.with_anti_spoofing(options)
    }

    /// Parameters of the loaded burn module for `kind`, or None for a model not loaded (the
    /// other landmark model, or the recognition model when templates are not wanted).
    pub fn parameter_count(&self, kind: ModelKind) -> Option<usize> {
        match (kind, &self.landmarker) {
            (ModelKind::Detector, _) => Some(self.detector.num_params()),
            (ModelKind::Landmarks, Landmarker::Mesh(model)) => Some(model.num_params()),
            (ModelKind::LandmarksWithAttention, Landmarker::WithAttention(model)) => {
                Some(model.num_params())
            }
            (ModelKind::Recognition, _) => self.recognizer.as_ref().map(Module::num_params),
            (ModelKind::AntiSpoofing, _) => self.anti_spoofing.as_ref().map(Module::num_params),
            _ => None,
        }
    }
}

/// The recognition model, loaded onto `device` from where `options` say.
pub fn load_recognizer(
    device: &ComputeDevice,
    options: &ModelOptions,
) -> Result<FaceRecognizer, WeightError> {
    let file = WeightFile::load(
        ModelKind::Recognition,
        &options.weights,
        options.verify_checksum,
    )?;
    FaceRecognizer::load(&file, &device.device)
}

/// A model output `[N, ...]` read back to the host as one flat row per batch item.
pub fn rows_per_item<const D: usize>(tensor: Tensor<D>) -> Vec<Vec<f32>> {
    let batch = tensor.dims()[0];
    let values = tensor
        .into_data()
        .try_to_vec::<f32>()
        .expect("model outputs are float32");
    split_rows(&values, batch)
}

/// Several outputs `[N, ...]` of one forward pass read back together (one wait for the device,
/// not one per output), each as one flat row per batch item.
pub fn read_rows<const K: usize>(outputs: [Tensor<2>; K]) -> [Vec<Vec<f32>>; K] {
    let batch = outputs[0].dims()[0];
    let read = outputs
        .into_iter()
        .fold(Transaction::default(), Transaction::register);
    let rows: Vec<Vec<Vec<f32>>> = read
        .execute()
        .into_iter()
        .map(|data| {
            let values = data
                .try_into_vec::<f32>()
                .expect("model outputs are float32");
            split_rows(&values, batch)
        })
        .collect();
    rows.try_into().expect("one result per output registered")
}

/// The values of a `[batch, ...]` output, one flat row per batch item.
pub fn split_rows(values: &[f32], batch: usize) -> Vec<Vec<f32>> {
    values
        .chunks(values.len() / batch.max(1))
        .map(<[f32]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tflite::TfliteModel;

    /// The burn modules hold exactly as many parameters as the files hold float constants: no
    /// weight in a file is left unused, and no burn parameter is left at its initial value.
    #[test]
    fn every_weight_in_the_files_is_used() {
        let models = FaceModels::load(ComputeDevice::cpu(), &ModelOptions::default()).unwrap();
        for kind in [ModelKind::Detector, ModelKind::Landmarks] {
            let in_file = TfliteModel::parse(kind.embedded_weights())
                .unwrap()
                .float_constant_count();
            assert_eq!(models.parameter_count(kind), Some(in_file), "{kind:?}");
        }
    }

    /// Writes `bytes` as the landmark model's weight file in a fresh directory.
    fn directory_with_landmark_file(test: &str, bytes: &[u8]) -> ModelOptions {
        let dir = std::env::temp_dir().join(format!("face-service-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = ModelKind::Landmarks.description().weights;
        std::fs::write(dir.join(name), bytes).unwrap();
        ModelOptions {
            weights: WeightSource::Directory(dir),
            verify_checksum: false,
            refine_landmarks: false,
        }
    }

    fn load_landmarks(options: &ModelOptions) -> Result<FaceLandmarker, WeightError> {
        let file = WeightFile::load(
            ModelKind::Landmarks,
            &options.weights,
            options.verify_checksum,
        )?;
        FaceLandmarker::load(&file, &ComputeDevice::cpu().device)
    }

    #[test]
    fn a_wrong_weight_file_is_refused_naming_the_file_and_the_tensor() {
        // The detector's file where the landmark model's should be.
        let mut options =
            directory_with_landmark_file("wrong", ModelKind::Detector.embedded_weights());
        let message = load_landmarks(&options).unwrap_err().to_string();
        assert!(message.contains("face_landmark.tflite"), "{message}");
        assert!(message.contains("tensor `"), "{message}");

        options.verify_checksum = true;
        let message = load_landmarks(&options).unwrap_err().to_string();
        assert!(message.contains("face_landmark.tflite"), "{message}");
        assert!(message.contains("sha256"), "{message}");
    }

    #[test]
    fn a_damaged_weight_file_is_an_error_naming_the_file_and_the_tensor() {
        let full = ModelKind::Landmarks.embedded_weights();
        let damaged = crate::tflite::tests::with_damaged_tensor(full, "p_re_lu_7/Alpha");
        let options = directory_with_landmark_file("damaged", &damaged);
        let message = load_landmarks(&options).unwrap_err().to_string();
        assert!(message.contains("face_landmark.tflite"), "{message}");
        assert!(message.contains("tensor `p_re_lu_7/Alpha`"), "{message}");

        // A truncated file loses its tensor table (stored at the end), so only the file and
        // the damage can be named.
        let options = directory_with_landmark_file("truncated", &full[..full.len() / 2]);
        let message = load_landmarks(&options).unwrap_err().to_string();
        assert!(message.contains("face_landmark.tflite"), "{message}");
        assert!(message.contains("truncated or damaged"), "{message}");
    }

    #[test]
    fn a_missing_weight_file_is_an_error_naming_it() {
        let options = ModelOptions {
            weights: WeightSource::Directory("/nonexistent/weights".into()),
            ..ModelOptions::default()
        };
        let message = load_landmarks(&options).unwrap_err().to_string();
        assert!(
            message.contains("/nonexistent/weights/face_landmark.tflite"),
            "{message}"
        );
    }
}
