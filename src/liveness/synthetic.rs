//! A synthetic face for tests: a mesh whose eye and mouth ratios, yaw and position are set
//! directly, so that the liveness rules and the sessions built on them are tested without a
//! camera or models.

use crate::liveness::indicators::{LEFT_EYE, MOUTH, RIGHT_EYE};

/// A synthetic face whose eye and mouth ratios, yaw and position are set directly: the
/// counters' own tests cover the thresholds; these cover how the check strings them.
#[derive(Clone, Copy)]
pub struct Pose {
    pub eyes: f32,
    pub mouth: f32,
    pub yaw: f32,
    pub shift: f32,
}

pub const REST: Pose = Pose {
    eyes: 0.3,
    mouth: 0.05,
    yaw: 0.0,
    shift: 0.0,
};

pub fn face(pose: Pose) -> (Vec<[f32; 3]>, [f32; 4]) {
    let mut points = vec![[0.0f32; 3]; 468];
    let (sin, cos) = pose.yaw.to_radians().sin_cos();
    let mut set = |index: usize, x: f32, y: f32| {
        // Turned about the vertical axis through the face's centre line.
        points[index] = [x * cos + pose.shift, y, x * sin];
    };
    for (eye, centre) in [(LEFT_EYE, -30.0), (RIGHT_EYE, 30.0)] {
        let half_lid = pose.eyes * 20.0 / 2.0;
        set(eye[0], centre - 10.0, 0.0);
        set(eye[3], centre + 10.0, 0.0);
        for (upper, lower, x) in [(eye[1], eye[5], -3.0), (eye[2], eye[4], 3.0)] {
            set(upper, centre + x, -half_lid);
            set(lower, centre + x, half_lid);
        }
    }
    set(MOUTH.left_corner, -20.0, 50.0);
    set(MOUTH.right_corner, 20.0, 50.0);
    set(MOUTH.upper_lip, 0.0, 50.0 - pose.mouth * 20.0);
    set(MOUTH.lower_lip, 0.0, 50.0 + pose.mouth * 20.0);
    set(234, -60.0, 10.0);
    set(454, 60.0, 10.0);
    set(10, 0.0, -70.0);
    set(152, 0.0, 70.0);
    (points, [pose.shift - 60.0, -70.0, 120.0, 140.0])
}
