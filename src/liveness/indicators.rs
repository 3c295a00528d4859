//! Per-frame measurements on a 468-point mesh, as the seed's `LivenessDetector` takes them
//! (`shared/PROTOCOL.md`, "Liveness, as the seed computes it"). Pure functions of one frame's
//! landmarks in pixels.

/// The six points of an eye, in the order of the eye-aspect-ratio formula: the two corners
/// (0 and 3) and two pairs of lid points (1/5 and 2/4).
pub type EyeIndices = [usize; 6];

/// The subject's left eye as the seed indexes it.
pub const LEFT_EYE: EyeIndices = [33, 160, 158, 133, 153, 144];
/// The subject's right eye as the seed indexes it.
pub const RIGHT_EYE: EyeIndices = [362, 385, 387, 263, 373, 380];

/// Inner lips (upper 13, lower 14) and mouth corners (61, 291).
pub const MOUTH: MouthIndices = MouthIndices {
    upper_lip: 13,
    lower_lip: 14,
    left_corner: 61,
    right_corner: 291,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MouthIndices {
    pub upper_lip: usize,
    pub lower_lip: usize,
    pub left_corner: usize,
    pub right_corner: usize,
}

fn distance(points: &[[f32; 3]], a: usize, b: usize) -> f32 {
    let (p, q) = (points[a], points[b]);
    ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
}

/// `(|p1 - p5| + |p2 - p4|) / (2 |p0 - p3|)`: lid opening over eye width, in the image plane.
/// About 0.3 for an open eye, near 0 for a closed one; 0 for a degenerate eye of no width.
pub fn eye_aspect_ratio(points: &[[f32; 3]], eye: EyeIndices) -> f32 {
    let width = distance(points, eye[0], eye[3]);
    if width <= f32::EPSILON {
        return 0.0;
    }
    (distance(points, eye[1], eye[5]) + distance(points, eye[2], eye[4])) / (2.0 * width)
}

/// Both eyes' ratios averaged: a blink closes both.
pub fn mean_eye_aspect_ratio(points: &[[f32; 3]]) -> f32 {
    (eye_aspect_ratio(points, LEFT_EYE) + eye_aspect_ratio(points, RIGHT_EYE)) / 2.0
}

/// Inner-lip opening over mouth width.
pub fn mouth_aspect_ratio(points: &[[f32; 3]], mouth: MouthIndices) -> f32 {
    let width = distance(points, mouth.left_corner, mouth.right_corner);
    if width <= f32::EPSILON {
        return 0.0;
    }
    distance(points, mouth.upper_lip, mouth.lower_lip) / width
}

/// How far the face moved since the previous frame: the shift of its box centre over the box
/// diagonal, so the measure does not depend on how close the face is. Boxes are
/// `[x, y, width, height]` in pixels.
pub fn motion(previous: [f32; 4], current: [f32; 4]) -> f32 {
    let centre = |b: [f32; 4]| [b[0] + b[2] / 2.0, b[1] + b[3] / 2.0];
    let (p, c) = (centre(previous), centre(current));
    let diagonal = (current[2].powi(2) + current[3].powi(2)).sqrt();
    if diagonal <= f32::EPSILON {
        return 0.0;
    }
    ((c[0] - p[0]).powi(2) + (c[1] - p[1]).powi(2)).sqrt() / diagonal
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mesh with every point at the origin except those given.
    fn mesh(points: &[(usize, [f32; 2])]) -> Vec<[f32; 3]> {
        let mut mesh = vec![[0.0; 3]; 468];
        for &(index, [x, y]) in points {
            mesh[index] = [x, y, 0.0];
        }
        mesh
    }

    #[test]
    fn eye_aspect_ratio_is_lid_opening_over_eye_width() {
        // Corners 30 px apart, lids 6 px and 12 px apart: (6 + 12) / (2 * 30) = 0.3.
        let m = mesh(&[
            (33, [0.0, 0.0]),
            (133, [30.0, 0.0]),
            (160, [10.0, -3.0]),
            (144, [10.0, 3.0]),
            (158, [20.0, -6.0]),
            (153, [20.0, 6.0]),
        ]);
        assert!((eye_aspect_ratio(&m, LEFT_EYE) - 0.3).abs() < 1e-6);
        // A closed eye, and an eye of no width.
        let closed = mesh(&[(33, [0.0, 0.0]), (133, [30.0, 0.0])]);
        assert_eq!(eye_aspect_ratio(&closed, LEFT_EYE), 0.0);
        assert_eq!(eye_aspect_ratio(&mesh(&[]), RIGHT_EYE), 0.0);
    }

    #[test]
    fn mouth_ratio_and_motion_are_scale_free() {
        let m = mesh(&[
            (61, [0.0, 0.0]),
            (291, [40.0, 0.0]),
            (13, [20.0, -5.0]),
            (14, [20.0, 5.0]),
        ]);
        assert!((mouth_aspect_ratio(&m, MOUTH) - 0.25).abs() < 1e-6);
        let twice = mesh(&[
            (61, [0.0, 0.0]),
            (291, [80.0, 0.0]),
            (13, [40.0, -10.0]),
            (14, [40.0, 10.0]),
        ]);
        assert!((mouth_aspect_ratio(&twice, MOUTH) - 0.25).abs() < 1e-6);
        // A 30x40 box (diagonal 50) whose centre moves 5 px: 0.1.
        assert!((motion([0.0, 0.0, 30.0, 40.0], [3.0, 4.0, 30.0, 40.0]) - 0.1).abs() < 1e-6);
        assert_eq!(motion([0.0; 4], [0.0; 4]), 0.0);
    }
}
