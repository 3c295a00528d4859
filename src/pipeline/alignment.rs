//! Aligning a face for recognition: five points taken off the mesh, the similarity transform
//! (rotation, uniform scale, shift) that best puts them on the recognition model's template,
//! and the warp of the frame through it into the model's 112x112 input.
//!
//! The five points are where OpenCV's YuNet puts its landmarks, and where ArcFace's template
//! expects them: the eye centres, the nose tip and the mouth corners, in the order the image
//! shows them (the subject's right eye first, on the image's left). The mesh has no single
//! eye-centre point, so an eye is the mean of its two corners and the middle of its two lids.
//! The transform is the least-squares one, as scikit-image's `SimilarityTransform` and
//! OpenCV's `estimateAffinePartial2D` find it, and the warp is OpenCV's `warpAffine` (bilinear,
//! black outside the frame), by the same sampler as the landmark crops.

use image::RgbImage;

use crate::models::description::ModelKind;
use crate::pipeline::crop::{Affine, Border, warp};

/// Mesh indices averaged into each of the five points, in template order. Eyes: outer corner,
/// inner corner, upper lid, lower lid.
pub const MESH_POINTS: [&[usize]; 5] = [
    &[33, 133, 159, 145],
    &[263, 362, 386, 374],
    // The nose tip.
    &[1],
    // The mouth corners.
    &[61],
    &[291],
];

/// The five points of a face from its mesh (468 or 478 points, frame pixels), in OpenCV's
/// pixel convention: the mesh's coordinates run from the frame's edge, OpenCV's from the
/// first pixel's centre, half a pixel in.
pub fn five_points(mesh: &[[f32; 3]]) -> [[f32; 2]; 5] {
    MESH_POINTS.map(|indices| {
        let n = indices.len() as f32;
        let [x, y] = indices
            .iter()
            .fold([0.0f32; 2], |[x, y], &i| [x + mesh[i][0], y + mesh[i][1]]);
        [x / n - 0.5, y / n - 0.5]
    })
}

/// `x' = a x - b y + tx`, `y' = b x + a y + ty`: a rotation by `atan2(b, a)`, a scale by
/// `hypot(a, b)` and a shift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// The similarity that maps `from` onto `to` with the least sum of squared distances
    /// (Umeyama's solution, in closed form for the plane); None when the `from` points all
    /// coincide.
    pub fn least_squares(from: &[[f32; 2]], to: &[[f32; 2]]) -> Option<Self> {
        assert_eq!(from.len(), to.len(), "as many points on both sides");
        let n = from.len() as f64;
        let mean = |points: &[[f32; 2]]| {
            let [x, y] = points.iter().fold([0.0f64; 2], |[x, y], p| {
                [x + f64::from(p[0]), y + f64::from(p[1])]
            });
            [x / n, y / n]
        };
        let ([fx, fy], [tx, ty]) = (mean(from), mean(to));
        let (mut spread, mut dot, mut cross) = (0.0, 0.0, 0.0);
        for (p, q) in from.iter().zip(to) {
            let (px, py) = (f64::from(p[0]) - fx, f64::from(p[1]) - fy);
            let (qx, qy) = (f64::from(q[0]) - tx, f64::from(q[1]) - ty);
            spread += px * px + py * py;
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
        }
        if spread <= f64::EPSILON {
            return None;
        }
        let (a, b) = (dot / spread, cross / spread);
        Some(Self {
            a,
            b,
            tx: tx - (a * fx - b * fy),
            ty: ty - (b * fx + a * fy),
        })
    }

    pub fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let (x, y) = (f64::from(x), f64::from(y));
        [
            (self.a * x - self.b * y + self.tx) as f32,
            (self.b * x + self.a * y + self.ty) as f32,
        ]
    }

    /// The map from the aligned image's pixels back onto the frame, which the sampler reads.
    pub fn inverse(&self) -> Affine {
        let det = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / det, self.b / det);
        Affine {
            a,
            b,
            c: -(a * self.tx + b * self.ty),
            d: -b,
            e: a,
            f: b * self.tx - a * self.ty,
        }
    }
}

/// Where the recognition model wants the five points, and its input's side.
pub struct Template {
    pub points: [[f32; 2]; 5],
    pub size: u32,
}

impl Template {
    /// The recognition model's, from `models/`.
    pub fn for_model() -> Self {
        let description = ModelKind::Recognition.description();
        let alignment = description
            .alignment
            .expect("the recognition model's description has [alignment] (checked by tests)");
        Self {
            points: alignment.points,
            size: description.input.width as u32,
        }
    }

    /// The transform of a face whose five points are `points`; None for points that all
    /// coincide.
    pub fn transform(&self, points: &[[f32; 2]; 5]) -> Option<Similarity> {
        Similarity::least_squares(points, &self.points)
    }

    /// The face warped into the model's input.
    pub fn warp(&self, frame: &RgbImage, transform: &Similarity) -> RgbImage {
        warp(
            frame,
            &transform.inverse(),
            self.size,
            self.size,
            Border::Zero,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five points roughly where a face's would be.
    const FRAME_POINTS: [[f32; 2]; 5] = [
        [10.0, 20.0],
        [50.0, 22.0],
        [31.0, 40.0],
        [15.0, 60.0],
        [47.0, 61.0],
    ];

    #[test]
    fn an_exact_similarity_is_recovered_and_inverted() {
        let truth = Similarity {
            a: 0.8,
            b: -0.3,
            tx: 12.5,
            ty: -4.0,
        };
        let from = FRAME_POINTS;
        let to = from.map(|p| truth.apply(p));
        let found = Similarity::least_squares(&from, &to).unwrap();
        for (got, want) in [
            (found.a, truth.a),
            (found.b, truth.b),
            (found.tx, truth.tx),
            (found.ty, truth.ty),
        ] {
            assert!((got - want).abs() < 1e-5, "{found:?}");
        }
        let back = found.inverse();
        for (p, q) in from.iter().zip(&to) {
            let (u, v) = (f64::from(q[0]), f64::from(q[1]));
            let (x, y) = (
                back.a * u + back.b * v + back.c,
                back.d * u + back.e * v + back.f,
            );
            assert!((x - f64::from(p[0])).abs() < 1e-3 && (y - f64::from(p[1])).abs() < 1e-3);
        }
    }

    /// Noisy points: the least-squares answer has no smaller error than small changes to it.
    #[test]
    fn the_fit_is_the_least_squares_one() {
        let from = FRAME_POINTS;
        let to = [
            [38.0, 51.0],
            [74.0, 52.0],
            [56.5, 71.0],
            [41.0, 93.0],
            [70.0, 92.0],
        ];
        let best = Similarity::least_squares(&from, &to).unwrap();
        let error = |s: &Similarity| -> f64 {
            from.iter()
                .zip(&to)
                .map(|(p, q)| {
                    let r = s.apply(*p);
                    f64::from(r[0] - q[0]).powi(2) + f64::from(r[1] - q[1]).powi(2)
                })
                .sum()
        };
        for delta in [1e-3, -1e-3] {
            for nudged in [
                Similarity {
                    a: best.a + delta,
                    ..best
                },
                Similarity {
                    b: best.b + delta,
                    ..best
                },
                Similarity {
                    tx: best.tx + delta * 100.0,
                    ..best
                },
                Similarity {
                    ty: best.ty + delta * 100.0,
                    ..best
                },
            ] {
                assert!(error(&nudged) > error(&best));
            }
        }
    }

    #[test]
    fn coinciding_points_have_no_transform() {
        let from = [[5.0, 5.0]; 5];
        assert_eq!(
            Similarity::least_squares(&from, &Template::for_model().points),
            None
        );
    }

    #[test]
    fn the_template_comes_from_the_models_description() {
        let template = Template::for_model();
        assert_eq!(template.size, 112);
        assert!(
            template.points[0][0] < template.points[1][0],
            "eyes in image order"
        );
        assert!(
            template.points[2][1] > template.points[0][1],
            "nose below the eyes"
        );
    }
}
