//! The attention model's three custom TFLite operators, as MediaPipe defines them
//! (`mediapipe/util/tflite/operations/`, version 2 of each), in plain Rust on the host.
//!
//! The model runs them between its burn layers: the mesh read back from the device picks, for
//! each region (lips, each eye), a rotated box in the 48x48 feature map
//! (`landmarks_to_transform_matrix`); the region's 16x16 patch is sampled out of the feature map
//! (`transform_tensor_bilinear`, on the device through `sampling_grid` where the model runs on a
//! GPU); and the region's own landmarks are mapped back by the same matrix
//! (`transform_landmarks`). Arithmetic is f32 in MediaPipe's order, so that the answers match
//! its kernels to float rounding.

use crate::tflite::TfliteError;
use crate::tflite::flexbuffers::Options;

/// A 4x4 transform, row-major, as the operators pass it (only the first two rows matter).
pub type Matrix4 = [f32; 16];

/// The options of one `Landmarks2TransformMatrix` operator: which mesh points fix the region's
/// rotation and extent, and the patch it maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionTransform {
    pub left_rotation_index: usize,
    pub right_rotation_index: usize,
    pub target_rotation_radians: f32,
    /// Mesh points whose rotated bounding box is the region.
    pub subset: Vec<usize>,
    pub output_width: usize,
    pub output_height: usize,
    /// How much larger than the points' box the patch is.
    pub scale_x: f32,
    pub scale_y: f32,
}

impl RegionTransform {
    /// Reads the operator's options, refusing any that would index outside a `points`-point
    /// mesh or describe an empty patch.
    pub fn from_options(options: &Options, points: usize) -> Result<Self, TfliteError> {
        let index = |value: i64, key: &str| {
            usize::try_from(value)
                .ok()
                .filter(|&i| i < points)
                .ok_or_else(|| invalid(&format!("{key} = {value} is not a point of the mesh")))
        };
        let positive = |key: &str| {
            let value = options.int(key)?;
            usize::try_from(value)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| invalid(&format!("{key} = {value} must be positive")))
        };
        let subset = options
            .ints("subset_idxs")?
            .iter()
            .map(|&i| index(i, "subset_idxs"))
            .collect::<Result<Vec<_>, _>>()?;
        if subset.is_empty() {
            return Err(invalid("subset_idxs is empty"));
        }
        Ok(Self {
            left_rotation_index: index(options.int("left_rotation_idx")?, "left_rotation_idx")?,
            right_rotation_index: index(options.int("right_rotation_idx")?, "right_rotation_idx")?,
            target_rotation_radians: options.float("target_rotation_radians")? as f32,
            subset,
            output_width: positive("output_width")?,
            output_height: positive("output_height")?,
            scale_x: options.float("scale_x")? as f32,
            scale_y: options.float("scale_y")? as f32,
        })
    }
}

fn invalid(what: &str) -> TfliteError {
    TfliteError::Malformed(format!("Landmarks2TransformMatrix: {what}"))
}

/// `Landmarks2TransformMatrix`: the matrix that maps a pixel of the region's patch to a point
/// of the feature map, from `mesh` (x, y, z per point, in feature-map pixels).
pub fn landmarks_to_transform_matrix(mesh: &[f32], region: &RegionTransform) -> Matrix4 {
    let xy = |i: usize| (mesh[3 * i], mesh[3 * i + 1]);
    let (left_x, left_y) = xy(region.left_rotation_index);
    let (right_x, right_y) = xy(region.right_rotation_index);
    let rotation = region.target_rotation_radians - (right_y - left_y).atan2(right_x - left_x);

    // The subset's box, measured in the frame turned by `rotation`.
    let (sin, cos) = rotation.sin_cos();
    let turned = region.subset.iter().map(|&i| {
        let (x, y) = xy(i);
        (cos * x - sin * y, sin * x + cos * y)
    });
    let (mut min, mut max) = ((f32::MAX, f32::MAX), (f32::MIN, f32::MIN));
    for (x, y) in turned {
        min = (min.0.min(x), min.1.min(y));
        max = (max.0.max(x), max.1.max(y));
    }
    let (width, height) = (max.0 - min.0, max.1 - min.1);
    let middle = ((min.0 + max.0) / 2.0, (min.1 + max.1) / 2.0);
    // The box's centre turned back into feature-map coordinates.
    let (sin_back, cos_back) = (-rotation).sin_cos();
    let centre = (
        cos_back * middle.0 - sin_back * middle.1,
        sin_back * middle.0 + cos_back * middle.1,
    );

    let (out_width, out_height) = (region.output_width as f32, region.output_height as f32);
    let mut transform = translation(centre.0, centre.1);
    transform = multiply(&transform, &rotation_about_z(-rotation));
    transform = multiply(
        &transform,
        &scaling(
            region.scale_x * width / out_width,
            region.scale_y * height / out_height,
        ),
    );
    multiply(
        &transform,
        &translation(-out_width / 2.0, -out_height / 2.0),
    )
}

/// Where output pixel (`x`, `y`) of `TransformTensorBilinear` samples its input, in input
/// pixels. The op first moves the matrix from pixel corners to pixel centres ("align corners").
fn sample_position(matrix: &Matrix4, x: usize, y: usize) -> (f32, f32) {
    let row = |r: usize| {
        let m = &matrix[4 * r..4 * r + 4];
        let shift = m[3] + m[0] * 0.5 + m[1] * 0.5 - 0.5;
        m[0] * x as f32 + m[1] * y as f32 + shift
    };
    (row(0), row(1))
}

/// `TransformTensorBilinear`: an `out_size` patch of a `[channels, height, width]` feature map
/// (channels first, as burn holds it), sampled bilinearly at `sample_position`. A sample
/// outside the map is zero as a whole, not blended with a zero border.
pub fn transform_tensor_bilinear(
    features: &[f32],
    [channels, height, width]: [usize; 3],
    matrix: &Matrix4,
    (out_width, out_height): (usize, usize),
) -> Vec<f32> {
    let mut patch = vec![0.0; channels * out_width * out_height];
    let plane = out_width * out_height;
    for out_y in 0..out_height {
        for out_x in 0..out_width {
            let (x, y) = sample_position(matrix, out_x, out_y);
            if !(0.0..=(width - 1) as f32).contains(&x) || !(0.0..=(height - 1) as f32).contains(&y)
            {
                continue;
            }
            let (left, top) = (x.floor(), y.floor());
            let (right_weight, lower_weight) = (x - left, y - top);
            let (left, top) = (left as usize, top as usize);
            // The right or lower neighbour is past the edge only when its weight is zero.
            let right = (left + 1).min(width - 1);
            let lower = (top + 1).min(height - 1);
            for channel in 0..channels {
                let map = &features[channel * height * width..][..height * width];
                let at = |row: usize, column: usize| map[row * width + column];
                let upper = (1.0 - right_weight) * at(top, left) + right_weight * at(top, right);
                let under =
                    (1.0 - right_weight) * at(lower, left) + right_weight * at(lower, right);
                patch[channel * plane + out_y * out_width + out_x] =
                    lower_weight * under + (1.0 - lower_weight) * upper;
            }
        }
    }
    patch
}

/// `TransformLandmarks` for 2D points (x, y pairs): each point through the matrix's first two
/// rows.
pub fn transform_landmarks(points: &[f32], matrix: &Matrix4) -> Vec<f32> {
    points
        .chunks_exact(2)
        .flat_map(|p| {
            [
                matrix[0] * p[0] + matrix[1] * p[1] + matrix[3],
                matrix[4] * p[0] + matrix[5] * p[1] + matrix[7],
            ]
        })
        .collect()
}

fn multiply(a: &Matrix4, b: &Matrix4) -> Matrix4 {
    let mut product = [0.0; 16];
    for row in 0..4 {
        for column in 0..4 {
            product[4 * row + column] = (0..4).map(|k| a[4 * row + k] * b[4 * k + column]).sum();
        }
    }
    product
}

fn translation(x: f32, y: f32) -> Matrix4 {
    [
        1.0, 0.0, 0.0, x, //
        0.0, 1.0, 0.0, y, //
        0.0, 0.0, 1.0, 0.0, //
        0.0, 0.0, 0.0, 1.0,
    ]
}

fn rotation_about_z(radians: f32) -> Matrix4 {
    let (sin, cos) = radians.sin_cos();
    [
        cos, -sin, 0.0, 0.0, //
        sin, cos, 0.0, 0.0, //
        0.0, 0.0, 1.0, 0.0, //
        0.0, 0.0, 0.0, 1.0,
    ]
}

fn scaling(x: f32, y: f32) -> Matrix4 {
    [
        x, 0.0, 0.0, 0.0, //
        0.0, y, 0.0, 0.0, //
        0.0, 0.0, 1.0, 0.0, //
        0.0, 0.0, 0.0, 1.0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_region() -> RegionTransform {
        RegionTransform {
            left_rotation_index: 0,
            right_rotation_index: 1,
            target_rotation_radians: 0.0,
            subset: vec![0, 1, 2, 3],
            output_width: 16,
            output_height: 16,
            scale_x: 1.5,
            scale_y: 1.5,
        }
    }

    /// A level 8x4 box centred at (20, 10): the patch is 1.5 times the box, centred on it, so
    /// patch pixel (0, 0) lands at the box's centre minus 1.5 times its half size.
    #[test]
    fn an_upright_box_maps_the_patch_around_its_centre() {
        let mesh = [
            16.0, 8.0, 0.0, 24.0, 8.0, 0.0, 24.0, 12.0, 0.0, 16.0, 12.0, 0.0,
        ];
        let m = landmarks_to_transform_matrix(&mesh, &square_region());
        let point = |x: f32, y: f32| (m[0] * x + m[1] * y + m[3], m[4] * x + m[5] * y + m[7]);
        let (x, y) = point(0.0, 0.0);
        assert!((x - (20.0 - 6.0)).abs() < 1e-5 && (y - (10.0 - 3.0)).abs() < 1e-5);
        let (x, y) = point(16.0, 16.0);
        assert!((x - (20.0 + 6.0)).abs() < 1e-5 && (y - (10.0 + 3.0)).abs() < 1e-5);
    }

    /// The same box turned by 90 degrees gives the same patch, turned: the region follows the
    /// line from the left to the right rotation point.
    #[test]
    fn a_turned_box_turns_the_patch() {
        // Left point above the right one: the eye line points down (+90 degrees).
        let mesh = [
            20.0, 6.0, 0.0, 20.0, 14.0, 0.0, 18.0, 14.0, 0.0, 22.0, 6.0, 0.0,
        ];
        let m = landmarks_to_transform_matrix(&mesh, &square_region());
        // The patch's x axis runs along the eye line, so down the feature map.
        assert!(m[0].abs() < 1e-5 && m[4] > 0.0, "{m:?}");
        let centre = (
            m[0] * 8.0 + m[1] * 8.0 + m[3],
            m[4] * 8.0 + m[5] * 8.0 + m[7],
        );
        assert!((centre.0 - 20.0).abs() < 1e-4 && (centre.1 - 10.0).abs() < 1e-4);
    }

    #[test]
    fn bilinear_sampling_blends_the_four_neighbours_and_zeroes_outside() {
        // One channel, 3x3, value = 10 * row + column.
        let features: Vec<f32> = (0..9).map(|i| (10 * (i / 3) + i % 3) as f32).collect();
        // A shift by a quarter pixel; with unit scale the op's half-pixel correction cancels,
        // so output (x, y) samples (x + 0.25, y + 0.25).
        let m = translation(0.25, 0.25);
        let patch = transform_tensor_bilinear(&features, [1, 3, 3], &m, (3, 3));
        let expect = |x: f32, y: f32| 10.0 * y + x;
        assert!((patch[0] - expect(0.25, 0.25)).abs() < 1e-5, "{patch:?}");
        assert!((patch[4] - expect(1.25, 1.25)).abs() < 1e-5, "{patch:?}");
        // Column 2 samples x = 2.25, past the last column: zero, not a blend with zero.
        assert_eq!(patch[2], 0.0);
        assert_eq!(patch[8], 0.0);
    }

    #[test]
    fn landmarks_go_through_the_first_two_rows() {
        let mut m = rotation_about_z(std::f32::consts::FRAC_PI_2);
        m[3] = 5.0;
        m[7] = -1.0;
        let out = transform_landmarks(&[1.0, 0.0, 0.0, 2.0], &m);
        let expected = [5.0, 0.0, 3.0, -1.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }
}
