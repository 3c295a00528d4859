//! Is this frame good enough to judge liveness on? A score from 0 to 1 built from the face's
//! size, sharpness, exposure, centring and frontality, and a reason to reject the frame
//! outright when it is unusable (several faces, a face too small, too dark, too bright or too
//! blurred).
//!
//! Sharpness and exposure are measured on the face alone, resampled to a fixed grid, so they
//! judge the face at its own scale: an upscaled low-resolution stream whose face fills the
//! frame is as sharp as a photo, while a blurred face is not at any resolution.

use image::RgbImage;
use serde::Serialize;

use crate::liveness::pose::HeadPose;

/// Thresholds and weights, named so each can be tuned and tested.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityRules {
    /// Face width over the frame's shorter side below which the frame is rejected...
    pub min_face_fraction: f32,
    /// ...and from which the size counts as fully good.
    pub good_face_fraction: f32,
    /// Variance of the Laplacian of the face (see `face_grid`) below which it is too blurred...
    pub min_sharpness: f32,
    /// ...and from which sharpness counts as fully good.
    pub good_sharpness: f32,
    /// Mean face luma (0-255) below which the frame is too dark, and above which too bright.
    pub too_dark_below: f32,
    pub too_bright_above: f32,
    /// Mean face luma range that counts as fully well exposed.
    pub good_brightness: (f32, f32),
    /// Yaw or roll (degrees) at which frontality counts as zero.
    pub max_frontal_degrees: f32,
    pub weights: QualityWeights,
}

/// How much each part counts in the score; they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityWeights {
    pub size: f32,
    pub sharpness: f32,
    pub brightness: f32,
    pub centring: f32,
    pub frontal: f32,
}

impl Default for QualityRules {
    /// Calibrated on real faces: the astronaut photo measures a sharpness of about 870, the
    /// carphone frames 100-175; a Gaussian blur of 2 px on the astronaut brings it to 55, of
    /// 4 px to 10. Its face is 18% of the frame's side, the carphone face about 30%.
    fn default() -> Self {
        Self {
            min_face_fraction: 0.08,
            good_face_fraction: 0.25,
            min_sharpness: 15.0,
            good_sharpness: 100.0,
            too_dark_below: 40.0,
            too_bright_above: 220.0,
            good_brightness: (80.0, 180.0),
            max_frontal_degrees: 45.0,
            weights: QualityWeights {
                size: 0.25,
                sharpness: 0.25,
                brightness: 0.2,
                centring: 0.15,
                frontal: 0.15,
            },
        }
    }
}

/// Why a frame cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    MultipleFaces,
    FaceTooSmall,
    TooDark,
    TooBright,
    TooBlurry,
}

impl Rejection {
    /// What to tell the person in front of the camera.
    pub fn advice(self) -> &'static str {
        match self {
            Rejection::MultipleFaces => "More than one face in view: only one person, please",
            Rejection::FaceTooSmall => "Face too small: come closer to the camera",
            Rejection::TooDark => "Face too dark: add light",
            Rejection::TooBright => "Face overexposed: reduce the light behind or on it",
            Rejection::TooBlurry => "Face blurred: hold the camera still and clean the lens",
        }
    }
}

/// One frame's quality: each part from 0 (bad) to 1 (good), their weighted score, and the
/// raw measures they come from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    pub score: f32,
    pub size: f32,
    pub sharpness: f32,
    pub brightness: f32,
    pub centring: f32,
    pub frontal: f32,
    pub face_fraction: f32,
    pub laplacian_variance: f32,
    pub mean_luma: f32,
    pub rejection: Option<Rejection>,
}

/// Side of the grid the face is resampled to for the sharpness and exposure measures.
const GRID: usize = 64;
/// Samples per grid cell and axis (at most), averaged: enough to low-pass the face before the
/// grid without reading every pixel of a large one.
const SAMPLES_PER_CELL: usize = 4;

/// Judges `face_box` (`[x, y, width, height]` in pixels) in `frame`, where `faces` faces were
/// found and the first has `pose`.
pub fn assess(
    frame: &RgbImage,
    face_box: [f32; 4],
    faces: usize,
    pose: HeadPose,
    rules: &QualityRules,
) -> Quality {
    let (width, height) = (frame.width() as f32, frame.height() as f32);
    let face_fraction = face_box[2] / width.min(height);
    let grid = face_grid(frame, face_box);
    let mean_luma = grid.iter().sum::<f32>() / grid.len() as f32;
    let laplacian_variance = laplacian_variance(&grid);

    let size = ramp(
        face_fraction,
        rules.min_face_fraction,
        rules.good_face_fraction,
    );
    let sharpness = ramp(
        laplacian_variance,
        rules.min_sharpness,
        rules.good_sharpness,
    );
    let (good_low, good_high) = rules.good_brightness;
    let brightness = ramp(mean_luma, rules.too_dark_below, good_low)
        .min(1.0 - ramp(mean_luma, good_high, rules.too_bright_above));
    let centre = [
        face_box[0] + face_box[2] / 2.0,
        face_box[1] + face_box[3] / 2.0,
    ];
    let off_centre = ((centre[0] - width / 2.0).powi(2) + (centre[1] - height / 2.0).powi(2))
        .sqrt()
        / (width.hypot(height) / 2.0);
    let centring = (1.0 - off_centre).clamp(0.0, 1.0);
    let frontal = 1.0 - (pose.yaw.abs().max(pose.roll.abs()) / rules.max_frontal_degrees).min(1.0);

    let w = rules.weights;
    let score = w.size * size
        + w.sharpness * sharpness
        + w.brightness * brightness
        + w.centring * centring
        + w.frontal * frontal;
    let rejection = if faces > 1 {
        Some(Rejection::MultipleFaces)
    } else if face_fraction < rules.min_face_fraction {
        Some(Rejection::FaceTooSmall)
    } else if mean_luma < rules.too_dark_below {
        Some(Rejection::TooDark)
    } else if mean_luma > rules.too_bright_above {
        Some(Rejection::TooBright)
    } else if laplacian_variance < rules.min_sharpness {
        Some(Rejection::TooBlurry)
    } else {
        None
    };
    Quality {
        score,
        size,
        sharpness,
        brightness,
        centring,
        frontal,
        face_fraction,
        laplacian_variance,
        mean_luma,
        rejection,
    }
}

/// 0 at or below `bad`, 1 at or above `good`, linear between.
fn ramp(value: f32, bad: f32, good: f32) -> f32 {
    ((value - bad) / (good - bad)).clamp(0.0, 1.0)
}

/// The face's luma (BT.601, 0-255) on a `GRID` x `GRID` grid, each cell the mean of up to
/// `SAMPLES_PER_CELL`^2 pixels spread over its area. The box is clipped to the frame.
fn face_grid(frame: &RgbImage, face_box: [f32; 4]) -> Vec<f32> {
    let (width, height) = (frame.width() as f32, frame.height() as f32);
    let x0 = face_box[0].clamp(0.0, width - 1.0);
    let y0 = face_box[1].clamp(0.0, height - 1.0);
    let x1 = (face_box[0] + face_box[2]).clamp(x0 + 1.0, width);
    let y1 = (face_box[1] + face_box[3]).clamp(y0 + 1.0, height);
    let (cell_w, cell_h) = ((x1 - x0) / GRID as f32, (y1 - y0) / GRID as f32);
    let steps = |cell: f32| (cell.ceil() as usize).clamp(1, SAMPLES_PER_CELL);
    let (steps_x, steps_y) = (steps(cell_w), steps(cell_h));
    // Where each cell's samples fall, worked out once per axis rather than per sample.
    let samples = |start: f32, cell: f32, steps: usize, size: u32| -> Vec<usize> {
        (0..GRID)
            .flat_map(|i| {
                (0..steps).map(move |s| {
                    let at = start + cell * (i as f32 + (s as f32 + 0.5) / steps as f32);
                    (at as u32).min(size - 1) as usize
                })
            })
            .collect()
    };
    let columns = samples(x0, cell_w, steps_x, frame.width());
    let rows = samples(y0, cell_h, steps_y, frame.height());
    let (pixels, stride) = (frame.as_raw(), frame.width() as usize * 3);
    // Each cell's channels are summed as integers and weighed once: luma is linear, and the
    // per-sample float conversions were most of the measure's time.
    let per_cell = (steps_x * steps_y) as f32;
    let mut grid = Vec::with_capacity(GRID * GRID);
    for cell_rows in rows.chunks_exact(steps_y) {
        for cell_columns in columns.chunks_exact(steps_x) {
            let mut sums = [0u32; 3];
            for &y in cell_rows {
                let row = &pixels[y * stride..][..stride];
                for &x in cell_columns {
                    let pixel = &row[x * 3..][..3];
                    for (sum, &value) in sums.iter_mut().zip(pixel) {
                        *sum += u32::from(value);
                    }
                }
            }
            let [r, g, b] = sums.map(|sum| sum as f32);
            grid.push((0.299 * r + 0.587 * g + 0.114 * b) / per_cell);
        }
    }
    grid
}

/// Variance of the 4-neighbour Laplacian over the grid's interior: high for crisp edges, low
/// for a blurred face.
fn laplacian_variance(grid: &[f32]) -> f32 {
    let at = |row: usize, column: usize| grid[row * GRID + column];
    let values: Vec<f32> = (1..GRID - 1)
        .flat_map(|row| (1..GRID - 1).map(move |column| (row, column)))
        .map(|(r, c)| at(r - 1, c) + at(r + 1, c) + at(r, c - 1) + at(r, c + 1) - 4.0 * at(r, c))
        .collect();
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 400x400 frame with a 160x160 checkerboard "face" in the middle.
    fn checkerboard(light: u8, dark: u8, square: u32) -> RgbImage {
        RgbImage::from_fn(400, 400, |x, y| {
            let inside = (120..280).contains(&x) && (120..280).contains(&y);
            let on = ((x / square) + (y / square)).is_multiple_of(2);
            let v = if inside && on { light } else { dark };
            image::Rgb([v, v, v])
        })
    }

    const FACE: [f32; 4] = [120.0, 120.0, 160.0, 160.0];

    fn judge(frame: &RgbImage, face_box: [f32; 4], faces: usize) -> Quality {
        assess(
            frame,
            face_box,
            faces,
            HeadPose::default(),
            &QualityRules::default(),
        )
    }

    #[test]
    fn a_large_sharp_well_lit_centred_face_scores_high() {
        let quality = judge(&checkerboard(200, 60, 10), FACE, 1);
        assert_eq!(quality.rejection, None);
        assert!(quality.score > 0.95, "{quality:?}");
        assert_eq!((quality.size, quality.sharpness), (1.0, 1.0));
    }

    #[test]
    fn each_rejection_has_its_threshold() {
        let rules = QualityRules::default();
        let sharp = checkerboard(200, 60, 10);
        assert_eq!(
            judge(&sharp, FACE, 2).rejection,
            Some(Rejection::MultipleFaces)
        );
        // 0.08 of the 400 px side is 32 px: 31 is too small, 33 is not.
        let small = |w: f32| judge(&sharp, [180.0, 180.0, w, w], 1);
        assert_eq!(small(31.0).rejection, Some(Rejection::FaceTooSmall));
        assert_ne!(small(33.0).rejection, Some(Rejection::FaceTooSmall));
        let flat = |v: u8| judge(&RgbImage::from_pixel(400, 400, image::Rgb([v; 3])), FACE, 1);
        assert_eq!(flat(39).rejection, Some(Rejection::TooDark));
        assert_eq!(flat(221).rejection, Some(Rejection::TooBright));
        // An even grey face of good exposure has no edges at all.
        assert_eq!(flat(128).rejection, Some(Rejection::TooBlurry));
        assert!(
            rules.too_dark_below < 128.0 && 128.0 < rules.too_bright_above,
            "the grey test stays in range"
        );
    }

    /// The astronaut photo, whose face MediaPipe boxes at about (178, 72, 94, 103): sharp, a
    /// little blurred (still usable, lower score), and blurred beyond use.
    #[test]
    fn a_blurred_real_face_loses_sharpness_then_is_rejected() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/fixtures/face_mesh/astronaut.png"
        );
        let photo = image::open(path).unwrap().to_rgb8();
        let face = [178.0, 72.0, 94.0, 103.0];
        let sharp = judge(&photo, face, 1);
        let soft = judge(&image::imageops::blur(&photo, 2.0), face, 1);
        let blurred = judge(&image::imageops::blur(&photo, 6.0), face, 1);
        assert_eq!((sharp.rejection, sharp.sharpness), (None, 1.0), "{sharp:?}");
        assert_eq!(soft.rejection, None, "{soft:?}");
        assert!(soft.score < sharp.score, "{soft:?}");
        assert_eq!(blurred.rejection, Some(Rejection::TooBlurry), "{blurred:?}");
    }

    #[test]
    fn off_centre_and_turned_faces_score_lower_but_pass() {
        let frame = checkerboard(200, 60, 10);
        let centred = judge(&frame, FACE, 1);
        let corner = judge(&frame, [0.0, 0.0, 160.0, 160.0], 1);
        assert!(corner.centring < centred.centring);
        let turned = assess(
            &frame,
            FACE,
            1,
            HeadPose {
                yaw: 30.0,
                ..HeadPose::default()
            },
            &QualityRules::default(),
        );
        assert!((turned.frontal - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(turned.rejection, None);
    }

    #[test]
    fn a_box_outside_the_frame_is_clipped_not_a_panic() {
        let quality = judge(&checkerboard(200, 60, 10), [-50.0, 390.0, 500.0, 500.0], 1);
        assert!(quality.score.is_finite());
    }
}
