//! The model descriptions in `models/*.toml`: the one place where each model's numbers live
//! (input size and range, outputs, anchors and thresholds, weight file and its sha256).
//! They are compiled into the binary, so a deployed server needs no files beside it.

use serde::Deserialize;

/// Which of the face models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    Detector,
    Landmarks,
    LandmarksWithAttention,
    /// OpenCV Zoo's SFace: face templates for recognition.
    Recognition,
    /// Minivision's two MiniFASNets: a live face or a presentation attack.
    AntiSpoofing,
}

impl ModelKind {
    pub const ALL: [ModelKind; 5] = [
        ModelKind::Detector,
        ModelKind::Landmarks,
        ModelKind::LandmarksWithAttention,
        ModelKind::Recognition,
        ModelKind::AntiSpoofing,
    ];

    /// The description shipped in `models/`, parsed. The files are part of the build, so a
    /// parse failure is a programming error caught by the tests, not a runtime condition.
    pub fn description(self) -> ModelDescription {
        let text = match self {
            ModelKind::Detector => include_str!("../../models/face_detection_short_range.toml"),
            ModelKind::Landmarks => include_str!("../../models/face_landmark.toml"),
            ModelKind::LandmarksWithAttention => {
                include_str!("../../models/face_landmark_with_attention.toml")
            }
            ModelKind::Recognition => include_str!("../../models/face_recognition_sface.toml"),
            ModelKind::AntiSpoofing => include_str!("../../models/anti_spoofing_minifasnet.toml"),
        };
        toml::from_str(text).expect("models/*.toml is valid (checked by tests)")
    }

    /// The weight file as shipped in `weights/`, compiled in.
    pub fn embedded_weights(self) -> &'static [u8] {
        match self {
            ModelKind::Detector => {
                include_bytes!("../../weights/face_detection_short_range.tflite")
            }
            ModelKind::Landmarks => include_bytes!("../../weights/face_landmark.tflite"),
            ModelKind::LandmarksWithAttention => {
                include_bytes!("../../weights/face_landmark_with_attention.tflite")
            }
            ModelKind::Recognition => {
                include_bytes!("../../weights/face_recognition_sface_2021dec_int8bq.onnx")
            }
            ModelKind::AntiSpoofing => {
                include_bytes!("../../weights/anti_spoofing_minifasnet.safetensors")
            }
        }
    }

    /// Parses a model name as the command line and the descriptions spell it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.description().name == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDescription {
    /// Short name used on the command line and in logs (`detector`, `landmarks`, ...).
    pub name: String,
    pub summary: String,
    /// File name inside `weights/`.
    pub weights: String,
    /// sha256 of the weight file as its package ships it.
    pub sha256: String,
    pub input: InputDescription,
    pub outputs: Vec<OutputDescription>,
    pub anchors: Option<AnchorOptions>,
    pub decoding: Option<DecodingOptions>,
    pub non_max_suppression: Option<NonMaxSuppressionOptions>,
    pub landmarks: Option<LandmarkOptions>,
    pub matching: Option<MatchingOptions>,
    pub alignment: Option<AlignmentOptions>,
    pub anti_spoofing: Option<AntiSpoofingOptions>,
}

impl ModelDescription {
    pub fn output(&self, name: &str) -> Option<&OutputDescription> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDescription {
    /// Name of the input tensor in the weight file.
    pub tensor: String,
    pub width: usize,
    pub height: usize,
    /// The range that RGB 0..=255 is mapped onto, linearly.
    pub range: [f32; 2],
    pub letterbox: bool,
}

impl InputDescription {
    /// Maps an 8-bit channel value onto the model's input range, in f32, exactly as the golden
    /// fixtures' generator does (`tests/golden/make_golden.py`), so both sides feed identical
    /// inputs.
    pub fn normalize(&self, value: u8) -> f32 {
        let [lo, hi] = self.range;
        lo + (hi - lo) * (f32::from(value) / 255.0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDescription {
    pub name: String,
    pub tensor: String,
    /// Shape of one batch item.
    pub shape: Vec<usize>,
}

/// MediaPipe's `SsdAnchorsCalculatorOptions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorOptions {
    pub num_layers: usize,
    pub min_scale: f32,
    pub max_scale: f32,
    pub input_width: usize,
    pub input_height: usize,
    pub anchor_offset_x: f32,
    pub anchor_offset_y: f32,
    pub strides: Vec<usize>,
    pub aspect_ratios: Vec<f32>,
    pub fixed_anchor_size: bool,
    pub interpolated_scale_aspect_ratio: f32,
    pub reduce_boxes_in_lowest_layer: bool,
}

/// MediaPipe's `TensorsToDetectionsCalculatorOptions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodingOptions {
    pub num_boxes: usize,
    pub num_coords: usize,
    pub box_coord_offset: usize,
    pub keypoint_coord_offset: usize,
    pub num_keypoints: usize,
    pub num_values_per_keypoint: usize,
    pub reverse_output_order: bool,
    pub x_scale: f32,
    pub y_scale: f32,
    pub w_scale: f32,
    pub h_scale: f32,
    pub sigmoid_score: bool,
    pub score_clipping_threshold: f32,
    pub min_score_threshold: f32,
}

/// MediaPipe's `NonMaxSuppressionCalculatorOptions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonMaxSuppressionOptions {
    pub min_suppression_threshold: f32,
    pub overlap: String,
    pub algorithm: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandmarkOptions {
    pub count: usize,
    /// Sigmoid of the face-presence logit below which the face counts as lost.
    pub presence_threshold: f32,
}

/// How two templates are compared.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingOptions {
    /// `cosine`: the dot product of L2-normalised templates.
    pub metric: String,
    /// Similarity at or above which two templates are taken for the same person.
    pub same_person_threshold: f32,
}

/// Where the five alignment points go in the model's input, in its pixels: the eye on the
/// image's left, the other eye, the nose tip, the mouth corner on the image's left, the other.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignmentOptions {
    pub points: [[f32; 2]; 5],
}

/// How the anti-spoofing networks are fed and their answers read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntiSpoofingOptions {
    /// The class of a live face.
    pub real_class: usize,
    pub batch_norm_epsilon: f64,
    /// The networks' mean probability of `real_class` from which a face counts as real.
    pub real_threshold: f32,
    pub networks: Vec<SpoofNetworkDescription>,
}

/// One of the anti-spoofing networks: its tensors' prefix in the weight file, the checkpoint
/// they come from, and how much of the frame around the face it sees.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoofNetworkDescription {
    pub name: String,
    pub source: String,
    pub source_sha256: String,
    /// The face box scaled by this about its centre is the network's crop.
    pub box_scale: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_description_parses_and_names_its_weights() {
        for kind in ModelKind::ALL {
            let description = kind.description();
            assert_eq!(ModelKind::from_name(&description.name), Some(kind));
            let format = match kind {
                ModelKind::Recognition => ".onnx",
                ModelKind::AntiSpoofing => ".safetensors",
                _ => ".tflite",
            };
            assert!(description.weights.ends_with(format));
            assert_eq!(description.sha256.len(), 64);
            assert!(!description.outputs.is_empty());
        }
    }

    #[test]
    fn normalisation_covers_the_declared_range() {
        let detector = ModelKind::Detector.description().input;
        assert_eq!(detector.normalize(0), -1.0);
        assert_eq!(detector.normalize(255), 1.0);
        let landmarks = ModelKind::Landmarks.description().input;
        assert_eq!(landmarks.normalize(0), 0.0);
        assert_eq!(landmarks.normalize(255), 1.0);
    }
}
