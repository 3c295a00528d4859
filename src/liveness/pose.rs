//! Head pose (yaw, pitch, roll in degrees) from the mesh's own 3D points.
//!
//! The landmark model gives every point a depth in the same scale as x, so the face's axes can
//! be read straight off the mesh: across the face from the right side to the left (eye corners
//! 33 -> 263 plus face edges 234 -> 454, summed to damp the jitter of any one point) and up it
//! from the chin (152) to the top of the forehead (10). No canonical face model ships in the
//! mediapipe wheel, and this needs none. Its error, measured by
//! `tests/golden/measure_head_pose.py` on MediaPipe's own landmarks of real photos (the
//! astronaut, a carphone frame) turned in the image plane by known angles (+-15, +-30 degrees)
//! and mirrored: roll within 1.5 degrees of the turn, yaw moved by at most 2 degrees by those
//! turns, and a mirrored photo reads the opposite yaw within 0.8 degrees. Pitch is the tilt of
//! the chin-to-forehead line out of the image plane, which leans by some degrees even in an
//! upright face (about -11 on the astronaut photo): read it as
//! relative, not absolute.

use serde::Serialize;

/// Degrees. Yaw is positive when the person turns their head to their own left (in an
/// unmirrored camera image, the nose moves right); pitch is positive when the chin comes up;
/// roll is positive when the head tilts clockwise in the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct HeadPose {
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
}

/// Right-to-left pairs across the face: outer eye corners and the face's edges at the cheeks.
const ACROSS: [(usize, usize); 2] = [(33, 263), (234, 454)];
const CHIN: usize = 152;
const FOREHEAD: usize = 10;

type Vector = [f32; 3];

fn sub(a: Vector, b: Vector) -> Vector {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: Vector, b: Vector) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: Vector, b: Vector) -> Vector {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalized(v: Vector) -> Option<Vector> {
    let length = dot(v, v).sqrt();
    (length > f32::EPSILON).then(|| v.map(|c| c / length))
}

/// The pose of a 468-point mesh in frame pixels (x right, y down, z away from the camera);
/// `None` for a degenerate mesh whose axes have no length.
pub fn head_pose(points: &[[f32; 3]]) -> Option<HeadPose> {
    let across = ACROSS
        .iter()
        .map(|&(right, left)| sub(points[left], points[right]))
        .fold([0.0; 3], |sum, v| {
            [sum[0] + v[0], sum[1] + v[1], sum[2] + v[2]]
        });
    let across = normalized(across)?;
    let up = sub(points[FOREHEAD], points[CHIN]);
    let up = normalized(sub(up, across.map(|c| c * dot(up, across))))?;
    // Out of the face, towards the camera (-z) when it looks straight at it.
    let out = cross(across, up);
    Some(HeadPose {
        yaw: across[2].clamp(-1.0, 1.0).asin().to_degrees(),
        pitch: up[2].atan2(-out[2]).to_degrees(),
        roll: across[1].atan2(across[0]).to_degrees(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frontal face's key points, then turned by `yaw` about the vertical axis and by `roll`
    /// in the image plane.
    fn face(yaw: f32, roll: f32) -> Vec<[f32; 3]> {
        let mut points = vec![[0.0; 3]; 468];
        points[33] = [-30.0, 0.0, 0.0];
        points[263] = [30.0, 0.0, 0.0];
        points[234] = [-60.0, 10.0, 20.0];
        points[454] = [60.0, 10.0, 20.0];
        points[10] = [0.0, -70.0, 0.0];
        points[152] = [0.0, 60.0, 0.0];
        let (sy, cy) = yaw.to_radians().sin_cos();
        let (sr, cr) = roll.to_radians().sin_cos();
        points
            .iter()
            .map(|&[x, y, z]| {
                // Turning to the person's left moves their left side (+x) away (+z).
                let (x, z) = (x * cy - z * sy, x * sy + z * cy);
                [x * cr - y * sr, x * sr + y * cr, z]
            })
            .collect()
    }

    #[test]
    fn a_frontal_face_has_no_pose() {
        let pose = head_pose(&face(0.0, 0.0)).unwrap();
        assert!(pose.yaw.abs() < 1e-4 && pose.pitch.abs() < 1e-4 && pose.roll.abs() < 1e-4);
    }

    #[test]
    fn yaw_and_roll_are_read_back_in_degrees_with_their_signs() {
        for (yaw, roll) in [(20.0, 0.0), (-35.0, 0.0), (0.0, 15.0), (25.0, -10.0)] {
            let pose = head_pose(&face(yaw, roll)).unwrap();
            assert!((pose.yaw - yaw).abs() < 0.01, "{pose:?} for {yaw}");
            assert!((pose.roll - roll).abs() < 0.01, "{pose:?} for {roll}");
            assert!(pose.pitch.abs() < 0.01, "{pose:?}");
        }
    }

    #[test]
    fn a_chin_coming_up_is_positive_pitch() {
        let mut points = face(0.0, 0.0);
        // The forehead goes back and the chin comes forward.
        points[10][2] = 20.0;
        points[152][2] = -20.0;
        let pose = head_pose(&points).unwrap();
        assert!(pose.pitch > 10.0, "{pose:?}");
    }

    #[test]
    fn a_degenerate_mesh_has_no_pose() {
        assert_eq!(head_pose(&vec![[0.0; 3]; 468]), None);
    }
}
