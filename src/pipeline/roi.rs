//! Regions of interest: where in the frame the landmark model looks. MediaPipe's
//! `DetectionsToRectsCalculator` (rotation from two keypoints) followed by
//! `RectTransformationCalculator` (scale 1.5, square on the long side), from a detection or from
//! the previous frame's landmarks.

use std::f32::consts::PI;

use crate::pipeline::detection::Detection;

/// A rotated rectangle in normalised frame coordinates (0..1 across each axis).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roi {
    pub x_center: f32,
    pub y_center: f32,
    pub width: f32,
    pub height: f32,
    /// Radians, clockwise in the image (y points down), in [-pi, pi).
    pub rotation: f32,
}

/// How a box becomes the landmark model's ROI: MediaPipe's face graphs use
/// scale 1.5 and make the box square on its longer side, in pixels.
#[derive(Debug, Clone, Copy)]
pub struct RoiOptions {
    pub scale: f32,
}

impl Default for RoiOptions {
    fn default() -> Self {
        Self { scale: 1.5 }
    }
}

/// Keypoints whose connecting line is turned horizontal: the detector's eyes (0 and 1); in the
/// 468-point mesh, the outer corners of the two eyes (33, 263). Older MediaPipe graphs name 33
/// and 133 (one eye's two corners), but mediapipe 0.10.21 turns by 33 and 263: with 133 its
/// tracked landmarks are off by 0.24 px on average from the first tracked frame, with 263 by
/// 0.002 px (checked against its own answers on the carphone clip).
const DETECTION_ROTATION_KEYPOINTS: (usize, usize) = (0, 1);
pub const LANDMARK_ROTATION_KEYPOINTS: (usize, usize) = (33, 263);

impl Roi {
    /// The ROI for a detection in normalised frame coordinates.
    pub fn from_detection(detection: &Detection, frame: (u32, u32), options: RoiOptions) -> Self {
        let (start, end) = DETECTION_ROTATION_KEYPOINTS;
        let rotation = rotation(detection.keypoints[start], detection.keypoints[end], frame);
        Self {
            x_center: detection.x_min + detection.width / 2.0,
            y_center: detection.y_min + detection.height / 2.0,
            width: detection.width,
            height: detection.height,
            rotation,
        }
        .squared_and_scaled(frame, options)
    }

    /// The ROI that tracks a face into the next frame: the box around all landmarks
    /// (normalised x, y), turned by the eye corners.
    pub fn from_landmarks(landmarks: &[[f32; 2]], frame: (u32, u32), options: RoiOptions) -> Self {
        let (mut x_min, mut y_min, mut x_max, mut y_max) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &[x, y] in landmarks {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        let (start, end) = LANDMARK_ROTATION_KEYPOINTS;
        Self {
            x_center: (x_min + x_max) / 2.0,
            y_center: (y_min + y_max) / 2.0,
            width: x_max - x_min,
            height: y_max - y_min,
            rotation: rotation(landmarks[start], landmarks[end], frame),
        }
        .squared_and_scaled(frame, options)
    }

    /// Square on the longer side in pixels (so the crop is not stretched), then scaled.
    fn squared_and_scaled(mut self, (width, height): (u32, u32), options: RoiOptions) -> Self {
        let long_side = (self.width * width as f32).max(self.height * height as f32);
        self.width = long_side / width as f32 * options.scale;
        self.height = long_side / height as f32 * options.scale;
        self
    }
}

/// The angle that turns the line from `start` to `end` horizontal, measured in pixels.
fn rotation(start: [f32; 2], end: [f32; 2], (width, height): (u32, u32)) -> f32 {
    let dx = (end[0] - start[0]) * width as f32;
    let dy = (end[1] - start[1]) * height as f32;
    normalize_radians(-(-dy).atan2(dx))
}

fn normalize_radians(angle: f32) -> f32 {
    angle - 2.0 * PI * ((angle + PI) / (2.0 * PI)).floor()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::detection::KEYPOINTS;

    fn detection_with_eyes(left: [f32; 2], right: [f32; 2]) -> Detection {
        let mut keypoints = [[0.5, 0.5]; KEYPOINTS];
        keypoints[0] = left;
        keypoints[1] = right;
        Detection {
            score: 0.9,
            x_min: 0.4,
            y_min: 0.3,
            width: 0.2,
            height: 0.3,
            keypoints,
        }
    }

    #[test]
    fn level_eyes_give_no_rotation_and_a_square_scaled_box() {
        let roi = Roi::from_detection(
            &detection_with_eyes([0.45, 0.4], [0.55, 0.4]),
            (640, 480),
            RoiOptions::default(),
        );
        assert_eq!(roi.rotation, 0.0);
        assert!((roi.x_center - 0.5).abs() < 1e-6 && (roi.y_center - 0.45).abs() < 1e-6);
        // Long side: max(0.2 * 640, 0.3 * 480) = 144 px, times 1.5 = 216 px, square.
        assert!((roi.width * 640.0 - 216.0).abs() < 1e-3);
        assert!((roi.height * 480.0 - 216.0).abs() < 1e-3);
    }

    #[test]
    fn a_head_tilted_clockwise_in_the_image_gives_a_positive_rotation() {
        // The second eye lower on screen (y grows downwards) than the first.
        let roi = Roi::from_detection(
            &detection_with_eyes([0.45, 0.40], [0.55, 0.40 + 0.1 * 640.0 / 480.0]),
            (640, 480),
            RoiOptions::default(),
        );
        assert!((roi.rotation - PI / 4.0).abs() < 1e-5, "{}", roi.rotation);
    }

    #[test]
    fn angles_wrap_into_minus_pi_to_pi() {
        assert!((normalize_radians(3.0 * PI / 2.0) + PI / 2.0).abs() < 1e-6);
        assert!((normalize_radians(-3.0 * PI / 2.0) - PI / 2.0).abs() < 1e-6);
        assert_eq!(normalize_radians(0.25), 0.25);
    }
}
