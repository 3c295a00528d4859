//! Between frame pixels and model inputs: the detector's letterbox, and projecting the models'
//! answers back onto the frame.

use crate::pipeline::crop::PixelRect;
use crate::pipeline::detection::Detection;
use crate::pipeline::roi::Roi;

/// The square region the detector sees: the whole frame, centred, padded on its short side
/// (MediaPipe's `keep_aspect_ratio` letterbox).
pub fn letterbox(frame: (u32, u32)) -> PixelRect {
    let (width, height) = (frame.0 as f32, frame.1 as f32);
    let side = width.max(height);
    PixelRect {
        x_center: width / 2.0,
        y_center: height / 2.0,
        width: side,
        height: side,
        rotation: 0.0,
    }
}

/// A detection in the letterboxed input's normalised coordinates, moved to the frame's.
pub fn detection_to_frame(
    detection: &Detection,
    letterbox: &PixelRect,
    frame: (u32, u32),
) -> Detection {
    let (width, height) = (frame.0 as f32, frame.1 as f32);
    let x = |value: f32| (letterbox.x_center + (value - 0.5) * letterbox.width) / width;
    let y = |value: f32| (letterbox.y_center + (value - 0.5) * letterbox.height) / height;
    Detection {
        score: detection.score,
        x_min: x(detection.x_min),
        y_min: y(detection.y_min),
        width: detection.width * letterbox.width / width,
        height: detection.height * letterbox.height / height,
        keypoints: detection.keypoints.map(|[kx, ky]| [x(kx), y(ky)]),
    }
}

/// A normalised ROI in frame pixels.
pub fn roi_to_pixels(roi: &Roi, frame: (u32, u32)) -> PixelRect {
    let (width, height) = (frame.0 as f32, frame.1 as f32);
    PixelRect {
        x_center: roi.x_center * width,
        y_center: roi.y_center * height,
        width: roi.width * width,
        height: roi.height * height,
        rotation: roi.rotation,
    }
}

/// The landmark model's points (x, y, z in pixels of its `input_size` crop) in frame pixels,
/// z scaled like x, as MediaPipe's `LandmarkProjectionCalculator` does.
pub fn landmarks_to_frame(
    raw: &[f32],
    rect: &PixelRect,
    input_size: (usize, usize),
) -> Vec<[f32; 3]> {
    let (input_width, input_height) = (input_size.0 as f32, input_size.1 as f32);
    let (sin, cos) = rect.rotation.sin_cos();
    raw.chunks_exact(3)
        .map(|point| {
            let x = (point[0] / input_width - 0.5) * rect.width;
            let y = (point[1] / input_height - 0.5) * rect.height;
            [
                rect.x_center + cos * x - sin * y,
                rect.y_center + sin * x + cos * y,
                point[2] / input_width * rect.width,
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::crop::Affine;
    use crate::pipeline::detection::KEYPOINTS;

    #[test]
    fn a_landscape_frame_is_padded_top_and_bottom() {
        let rect = letterbox((640, 480));
        assert_eq!((rect.width, rect.height), (640.0, 640.0));
        // The detector's top edge (y = 0) is 80 px above the frame.
        let detection = Detection {
            score: 1.0,
            x_min: 0.0,
            y_min: 0.0,
            width: 1.0,
            height: 1.0,
            keypoints: [[0.5, 0.125]; KEYPOINTS],
        };
        let in_frame = detection_to_frame(&detection, &rect, (640, 480));
        assert!((in_frame.y_min * 480.0 + 80.0).abs() < 1e-4);
        assert!((in_frame.height * 480.0 - 640.0).abs() < 1e-3);
        assert!((in_frame.keypoints[0][1] * 480.0).abs() < 1e-4);
    }

    /// Projecting a crop pixel back must land where the crop sampled it from.
    #[test]
    fn projection_inverts_the_crop_mapping() {
        let rect = PixelRect {
            x_center: 300.0,
            y_center: 200.0,
            width: 150.0,
            height: 150.0,
            rotation: 0.4,
        };
        let map = Affine::rect_to_output(&rect, 192, 192);
        for (u, v) in [(0.0, 0.0), (96.0, 50.0), (191.0, 10.0)] {
            let sampled = [map.a * u + map.b * v + map.c, map.d * u + map.e * v + map.f];
            let projected = landmarks_to_frame(&[u as f32, v as f32, 0.0], &rect, (192, 192))[0];
            assert!(
                (projected[0] as f64 - sampled[0]).abs() < 1e-3,
                "{projected:?} {sampled:?}"
            );
            assert!(
                (projected[1] as f64 - sampled[1]).abs() < 1e-3,
                "{projected:?} {sampled:?}"
            );
        }
    }
}
