//! The 478 points of the attention model, put together as MediaPipe's
//! `tensors_to_face_landmarks_with_attention.pbtxt` does: the 468-point mesh, with the x and y
//! of its lip and eye points replaced by the finer region outputs, then ten iris points whose
//! depth is the mean depth of their eye's contour.

/// Mesh points the lips output refines, in the order of its 80 points.
pub const LIPS: [usize; 80] = [
    // Lower outer, then upper outer (without the corners).
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    // Lower inner, upper inner.
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    // Lower semi-outer, upper semi-outer.
    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
    // Lower semi-inner, upper semi-inner.
    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
];

/// Mesh points the left-eye output refines (MediaPipe's "left" is the eye on the image's left).
/// The first 16 are the eye's contour, lower then upper; then five halos and the eyebrow.
pub const LEFT_EYE: [usize; 71] = [
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, //
    130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, //
    226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189, //
    35, 124, 46, 53, 52, 65, //
    143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105, 66, 107, 55, 193,
];

/// The right eye's points, in the same order as `LEFT_EYE`.
pub const RIGHT_EYE: [usize; 71] = [
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, //
    359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, //
    446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413, //
    265, 353, 276, 283, 282, 295, //
    372, 340, 346, 347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417,
];

/// Points on each eye's contour, whose mean depth its iris takes.
const EYE_CONTOUR: usize = 16;

pub const MESH_POINTS: usize = 468;
pub const IRIS_POINTS: usize = 5;
pub const REFINED_POINTS: usize = MESH_POINTS + 2 * IRIS_POINTS;

/// The model's outputs for one face, in crop pixels: the mesh as (x, y, z) triples, the
/// regions and irises as (x, y) pairs already mapped back by `transform_landmarks`.
pub struct RegionOutputs<'a> {
    pub mesh: &'a [f32],
    pub lips: &'a [f32],
    pub left_eye: &'a [f32],
    pub right_eye: &'a [f32],
    pub left_iris: &'a [f32],
    pub right_iris: &'a [f32],
}

/// The 478 points as (x, y, z) triples: mesh 0-467, left iris 468-472 (centre, then right,
/// top, left and bottom edges), right iris 473-477.
pub fn refine(outputs: &RegionOutputs<'_>) -> Vec<f32> {
    let mut points = outputs.mesh[..3 * MESH_POINTS].to_vec();
    for (indices, refined) in [
        (&LIPS[..], outputs.lips),
        (&LEFT_EYE[..], outputs.left_eye),
        (&RIGHT_EYE[..], outputs.right_eye),
    ] {
        for (&index, xy) in indices.iter().zip(refined.chunks_exact(2)) {
            points[3 * index..3 * index + 2].copy_from_slice(xy);
        }
    }
    for (eye, iris) in [
        (&LEFT_EYE, outputs.left_iris),
        (&RIGHT_EYE, outputs.right_iris),
    ] {
        let depth = eye[..EYE_CONTOUR]
            .iter()
            .map(|&i| points[3 * i + 2])
            .sum::<f32>()
            / EYE_CONTOUR as f32;
        for xy in iris.chunks_exact(2) {
            points.extend([xy[0], xy[1], depth]);
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_replace_x_and_y_and_irises_take_their_eyes_depth() {
        let mesh: Vec<f32> = (0..3 * MESH_POINTS).map(|i| i as f32).collect();
        let lips = vec![-1.0; 2 * LIPS.len()];
        let eye = vec![-2.0; 2 * LEFT_EYE.len()];
        let iris = [7.0; 2 * IRIS_POINTS];
        let points = refine(&RegionOutputs {
            mesh: &mesh,
            lips: &lips,
            left_eye: &eye,
            right_eye: &eye,
            left_iris: &iris,
            right_iris: &iris,
        });
        assert_eq!(points.len(), 3 * REFINED_POINTS);
        // Lip point 61: x and y from the lips output, z kept from the mesh.
        assert_eq!(
            &points[3 * 61..3 * 61 + 3],
            &[-1.0, -1.0, (3 * 61 + 2) as f32]
        );
        // A point in no region is the mesh's.
        assert_eq!(&points[3..6], &mesh[3..6]);
        // Left iris depth: the mean mesh z of the left eye's 16 contour points.
        let depth = LEFT_EYE[..16]
            .iter()
            .map(|&i| (3 * i + 2) as f32)
            .sum::<f32>()
            / 16.0;
        assert_eq!(&points[3 * 468..3 * 468 + 3], &[7.0, 7.0, depth]);
    }
}
