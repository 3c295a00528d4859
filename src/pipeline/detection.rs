//! From the detector's raw outputs to face detections: anchor decoding, sigmoid scores and
//! weighted non-max suppression, as MediaPipe's `TensorsToDetectionsCalculator` and
//! `NonMaxSuppressionCalculator` do with the options in `models/face_detection_short_range.toml`.

use crate::models::description::{DecodingOptions, NonMaxSuppressionOptions};
use crate::pipeline::anchors::Anchor;

/// Number of keypoints BlazeFace predicts: right eye, left eye, nose tip, mouth, right ear
/// tragion, left ear tragion (as seen in the image, "right" is the subject's right).
pub const KEYPOINTS: usize = 6;

/// A face found by the detector, in normalised coordinates (0..1 across the detector's input
/// until projected to the frame).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub score: f32,
    pub x_min: f32,
    pub y_min: f32,
    pub width: f32,
    pub height: f32,
    pub keypoints: [[f32; 2]; KEYPOINTS],
}

impl Detection {
    fn area(&self) -> f32 {
        self.width * self.height
    }

    /// Intersection over union of the two boxes.
    pub fn iou(&self, other: &Detection) -> f32 {
        let x0 = self.x_min.max(other.x_min);
        let y0 = self.y_min.max(other.y_min);
        let x1 = (self.x_min + self.width).min(other.x_min + other.width);
        let y1 = (self.y_min + self.height).min(other.y_min + other.height);
        let intersection = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - intersection;
        if union > 0.0 {
            intersection / union
        } else {
            0.0
        }
    }
}

/// Decodes one image's outputs (`regressors`: 896 x 16, `scores`: 896 logits) against the
/// anchors, keeping the boxes whose sigmoid score reaches `min_score`.
pub fn decode(
    regressors: &[f32],
    scores: &[f32],
    anchors: &[Anchor],
    options: &DecodingOptions,
    min_score: f32,
) -> Vec<Detection> {
    let coords = options.num_coords;
    let mut detections = Vec::new();
    for (index, anchor) in anchors.iter().enumerate() {
        let clip = options.score_clipping_threshold;
        let logit = scores[index].clamp(-clip, clip);
        let score = if options.sigmoid_score {
            sigmoid(logit)
        } else {
            logit
        };
        if score < min_score {
            continue;
        }
        let raw = &regressors[index * coords..(index + 1) * coords];
        let b = options.box_coord_offset;
        // MediaPipe's "reverse output order": x before y, width before height.
        let (x, y, w, h) = if options.reverse_output_order {
            (raw[b], raw[b + 1], raw[b + 2], raw[b + 3])
        } else {
            (raw[b + 1], raw[b], raw[b + 3], raw[b + 2])
        };
        let x_center = x / options.x_scale * anchor.width + anchor.x_center;
        let y_center = y / options.y_scale * anchor.height + anchor.y_center;
        let width = w / options.w_scale * anchor.width;
        let height = h / options.h_scale * anchor.height;
        let mut keypoints = [[0.0; 2]; KEYPOINTS];
        for (k, keypoint) in keypoints.iter_mut().enumerate().take(options.num_keypoints) {
            let at = options.keypoint_coord_offset + k * options.num_values_per_keypoint;
            let (kx, ky) = if options.reverse_output_order {
                (raw[at], raw[at + 1])
            } else {
                (raw[at + 1], raw[at])
            };
            *keypoint = [
                kx / options.x_scale * anchor.width + anchor.x_center,
                ky / options.y_scale * anchor.height + anchor.y_center,
            ];
        }
        detections.push(Detection {
            score,
            x_min: x_center - width / 2.0,
            y_min: y_center - height / 2.0,
            width,
            height,
            keypoints,
        });
    }
    detections
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Weighted non-max suppression: the best-scoring box absorbs every box overlapping it by more
/// than the threshold, and becomes their score-weighted average (box and keypoints), keeping
/// its own score. Steadier than plain NMS, which is why MediaPipe uses it for faces.
pub fn weighted_non_max_suppression(
    mut detections: Vec<Detection>,
    options: &NonMaxSuppressionOptions,
) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = Vec::new();
    while let Some(best) = detections.first().cloned() {
        let (overlapping, rest): (Vec<_>, Vec<_>) = detections
            .into_iter()
            .partition(|other| best.iou(other) > options.min_suppression_threshold);
        let total: f32 = overlapping.iter().map(|d| d.score).sum();
        let mut merged = best.clone();
        if total > 0.0 {
            let average = |value: &dyn Fn(&Detection) -> f32| {
                overlapping.iter().map(|d| d.score * value(d)).sum::<f32>() / total
            };
            let x_min = average(&|d| d.x_min);
            let y_min = average(&|d| d.y_min);
            let x_max = average(&|d| d.x_min + d.width);
            let y_max = average(&|d| d.y_min + d.height);
            merged.x_min = x_min;
            merged.y_min = y_min;
            merged.width = x_max - x_min;
            merged.height = y_max - y_min;
            for k in 0..KEYPOINTS {
                merged.keypoints[k] = [
                    average(&|d| d.keypoints[k][0]),
                    average(&|d| d.keypoints[k][1]),
                ];
            }
        }
        kept.push(merged);
        detections = rest;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(score: f32, x_min: f32, y_min: f32, size: f32) -> Detection {
        Detection {
            score,
            x_min,
            y_min,
            width: size,
            height: size,
            keypoints: [[x_min, y_min]; KEYPOINTS],
        }
    }

    fn options(threshold: f32) -> NonMaxSuppressionOptions {
        NonMaxSuppressionOptions {
            min_suppression_threshold: threshold,
            overlap: "intersection_over_union".into(),
            algorithm: "weighted".into(),
        }
    }

    #[test]
    fn overlapping_boxes_merge_into_their_score_weighted_average() {
        let merged = weighted_non_max_suppression(
            vec![detection(0.6, 0.2, 0.2, 0.4), detection(0.9, 0.1, 0.1, 0.4)],
            &options(0.3),
        );
        assert_eq!(merged.len(), 1);
        let m = &merged[0];
        assert_eq!(m.score, 0.9);
        let expected_x = (0.9 * 0.1 + 0.6 * 0.2) / 1.5;
        assert!((m.x_min - expected_x).abs() < 1e-6);
        assert!((m.width - 0.4).abs() < 1e-6);
        assert!((m.keypoints[3][0] - expected_x).abs() < 1e-6);
    }

    #[test]
    fn separate_faces_stay_separate_best_first() {
        let kept = weighted_non_max_suppression(
            vec![detection(0.7, 0.0, 0.0, 0.2), detection(0.8, 0.5, 0.5, 0.2)],
            &options(0.3),
        );
        assert_eq!(
            kept.iter().map(|d| d.score).collect::<Vec<_>>(),
            vec![0.8, 0.7]
        );
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = detection(1.0, 0.0, 0.0, 1.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&detection(1.0, 2.0, 2.0, 1.0)), 0.0);
        let half = Detection {
            x_min: 0.5,
            ..a.clone()
        };
        assert!((a.iou(&half) - 1.0 / 3.0).abs() < 1e-6);
    }
}
