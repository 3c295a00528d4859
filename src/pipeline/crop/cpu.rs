//! Cutting a rotated region out of a frame into a model input, on the CPU.
//!
//! This is the reference for the GPU crop shader, and what the CPU fallback runs. It reproduces
//! MediaPipe's CPU `ImageToTensorCalculator`, which warps the 8-bit image with OpenCV
//! (`warpPerspective`, `INTER_LINEAR`) so that the rectangle's corners land on the output's
//! corners, and only then converts to float. OpenCV's bilinear filter on 8-bit images works in
//! fixed point (sample positions rounded to 1/32 pixel, 15-bit weights); doing the same here
//! makes our crops equal MediaPipe's to the byte, so the models see identical inputs.

use image::RgbImage;

use crate::pipeline::crop::geometry::{Affine, Border, PixelRect};

/// Sub-pixel positions are quantised to 1/32 pixel, as OpenCV's `INTER_BITS = 5`.
const SUBPIXEL_BITS: i32 = 5;
const SUBPIXEL_STEPS: i32 = 1 << SUBPIXEL_BITS;
/// Bilinear weights are 15-bit fixed point, as OpenCV's `INTER_REMAP_COEF_BITS`.
const WEIGHT_BITS: i32 = 15;
const WEIGHT_ONE: i32 = 1 << WEIGHT_BITS;

/// Bilinear-samples `rect` of `frame` into an `out_width` x `out_height` image.
pub fn crop(
    frame: &RgbImage,
    rect: &PixelRect,
    out_width: u32,
    out_height: u32,
    border: Border,
) -> RgbImage {
    let map = Affine::rect_to_output(rect, out_width, out_height);
    sample(
        frame,
        &map,
        (out_width, out_height),
        border,
        Rounding::Perspective,
    )
}

/// Bilinear-samples `frame` at `map` of every pixel of an `out_width` x `out_height` image, as
/// OpenCV's `warpAffine` does with the inverse of `map`.
pub fn warp(
    frame: &RgbImage,
    map: &Affine,
    out_width: u32,
    out_height: u32,
    border: Border,
) -> RgbImage {
    sample(
        frame,
        map,
        (out_width, out_height),
        border,
        Rounding::Affine,
    )
}

/// How a sample position becomes 1/32 pixels: OpenCV's two warps round differently, and a
/// position rounded the other way moves a byte by a grey level or more at an edge.
#[derive(Debug, Clone, Copy)]
enum Rounding {
    /// `warpPerspective` (MediaPipe's crops): each position from the exact map, to nearest.
    Perspective,
    /// `warpAffine`: the row's part and the column's part of the map each rounded to 1/1024
    /// pixel, summed with half a 1/32 step, and cut down to 1/32.
    Affine,
}

/// OpenCV's `warpAffine` works in 1/1024 pixels before cutting to 1/32 (`AB_BITS`).
const AFFINE_BITS: i32 = 10;

fn sample(
    frame: &RgbImage,
    map: &Affine,
    (out_width, out_height): (u32, u32),
    border: Border,
    rounding: Rounding,
) -> RgbImage {
    let mut out = RgbImage::new(out_width, out_height);
    let sampler = Sampler {
        pixels: frame.as_raw(),
        width: i64::from(frame.width()),
        height: i64::from(frame.height()),
        border,
    };
    let affine_scale = f64::from(1 << AFFINE_BITS);
    // warpAffine's column parts, the same for every row.
    let column_parts: Vec<(i64, i64)> = match rounding {
        Rounding::Perspective => Vec::new(),
        Rounding::Affine => (0..out_width)
            .map(|u| {
                let u = f64::from(u);
                (
                    round_to_even(map.a * u * affine_scale),
                    round_to_even(map.d * u * affine_scale),
                )
            })
            .collect(),
    };
    let mut positions = vec![(0i64, 0i64); out_width as usize];
    for (v, row) in out.chunks_exact_mut(out_width as usize * 3).enumerate() {
        let v = v as f64;
        match rounding {
            Rounding::Perspective => {
                for (u, position) in positions.iter_mut().enumerate() {
                    let u = u as f64;
                    // Position in 1/32 pixels, rounded to nearest like OpenCV's saturate_cast.
                    *position = (
                        round_to_even((map.a * u + map.b * v + map.c) * f64::from(SUBPIXEL_STEPS)),
                        round_to_even((map.d * u + map.e * v + map.f) * f64::from(SUBPIXEL_STEPS)),
                    );
                }
            }
            Rounding::Affine => {
                let half_step = 1 << (AFFINE_BITS - SUBPIXEL_BITS - 1);
                let x0 = round_to_even((map.b * v + map.c) * affine_scale) + half_step;
                let y0 = round_to_even((map.e * v + map.f) * affine_scale) + half_step;
                let shift = AFFINE_BITS - SUBPIXEL_BITS;
                for (position, &(dx, dy)) in positions.iter_mut().zip(&column_parts) {
                    *position = ((x0 + dx) >> shift, (y0 + dy) >> shift);
                }
            }
        }
        // Positions move monotonically along a row, so when both ends' windows are inside
        // the frame (nearly every row of a face crop), every window between them is too.
        let (&first, &last) = (&positions[0], &positions[positions.len() - 1]);
        if sampler.window_inside(first) && sampler.window_inside(last) {
            sampler.inside_row(row, &positions);
        } else {
            let pixels = row.chunks_exact_mut(3).zip(&positions);
            pixels.for_each(|(pixel, &position)| sampler.anywhere(pixel, position));
        }
    }
    out
}

/// Reads 2x2 windows of a frame for the bilinear filter.
struct Sampler<'a> {
    pixels: &'a [u8],
    width: i64,
    height: i64,
    border: Border,
}

impl Sampler<'_> {
    /// Whether the window at a position (in 1/32 pixels) lies wholly inside the frame.
    fn window_inside(&self, (x, y): (i64, i64)) -> bool {
        let (x0, y0) = (x >> SUBPIXEL_BITS, y >> SUBPIXEL_BITS);
        x0 >= 0 && y0 >= 0 && x0 + 1 < self.width && y0 + 1 < self.height
    }

    /// A row of output pixels whose windows are all inside the frame, with AVX2 where the
    /// CPU has it.
    fn inside_row(&self, row: &mut [u8], positions: &[(i64, i64)]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the feature the function is compiled for was just detected.
            return unsafe { self.inside_row_avx2(row, positions) };
        }
        self.inside_row_scalar(row, positions);
    }

    fn inside_row_scalar(&self, row: &mut [u8], positions: &[(i64, i64)]) {
        let pixels = row.chunks_exact_mut(3).zip(positions);
        pixels.for_each(|(pixel, &position)| self.inside(pixel, position));
    }

    /// `inside_row` with one multiply-add instruction per output pixel: the pixel's two
    /// window rows, eight bytes each, go into one register, a shuffle pairs each channel's
    /// two taps as 16-bit words (top row in the low half, bottom in the high), and `pmaddwd`
    /// weighs each pair. The weights are OpenCV's divided by 32 (all are multiples of it), so
    /// they fit 16 bits; the sum is then rounded and shifted by 10 bits instead of 15, which
    /// gives the same bytes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn inside_row_avx2(&self, row: &mut [u8], positions: &[(i64, i64)]) {
        use std::arch::x86_64::*;
        // The weights below sum to 32 x 32.
        const SHIFT: i32 = 2 * SUBPIXEL_BITS;
        // Low half: the top row's (r0, r1), (g0, g1), (b0, b1) as words from bytes 0-5; high
        // half: the bottom row's from bytes 8-13; -1 gives a zero byte.
        #[rustfmt::skip]
        let pairs = _mm256_setr_epi8(
            0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
            8, -1, 11, -1, 9, -1, 12, -1, 10, -1, 13, -1, -1, -1, -1, -1,
        );
        let rounding = _mm_set1_epi32(1 << (SHIFT - 1));
        let step = i64::from(SUBPIXEL_STEPS - 1);
        for (pixel, &(x, y)) in row.chunks_exact_mut(3).zip(positions) {
            let (top, bottom) = self.window_rows((x, y));
            // The window's six bytes are read as eight; the last pixel of the frame has no
            // two bytes after it.
            let (Some(top_bytes), Some(bottom_bytes)) = (
                self.pixels.get(top..top + 8),
                self.pixels.get(bottom..bottom + 8),
            ) else {
                self.inside(pixel, (x, y));
                continue;
            };
            let word = |bytes: &[u8]| i64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            let taps = _mm_set_epi64x(word(bottom_bytes), word(top_bytes));
            let taps = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(taps), pairs);
            let (fx, fy) = ((x & step) as i32, (y & step) as i32);
            let (gx, gy) = (SUBPIXEL_STEPS - fx, SUBPIXEL_STEPS - fy);
            let weights = _mm256_set_m128i(
                _mm_set1_epi32((gx * fy) | ((fx * fy) << 16)),
                _mm_set1_epi32((gx * gy) | ((fx * gy) << 16)),
            );
            let sums = _mm256_madd_epi16(taps, weights);
            let sum = _mm_add_epi32(
                _mm256_castsi256_si128(sums),
                _mm256_extracti128_si256::<1>(sums),
            );
            let sum = _mm_srli_epi32::<SHIFT>(_mm_add_epi32(sum, rounding));
            let bytes = _mm_packus_epi16(_mm_packus_epi32(sum, sum), sum);
            pixel.copy_from_slice(&_mm_cvtsi128_si32(bytes).to_le_bytes()[..3]);
        }
    }

    /// Where the two rows of the window at a position (in 1/32 pixels) start in the frame's
    /// bytes.
    #[inline(always)]
    fn window_rows(&self, (x, y): (i64, i64)) -> (usize, usize) {
        let top = (((y >> SUBPIXEL_BITS) * self.width + (x >> SUBPIXEL_BITS)) * 3) as usize;
        (top, top + (self.width * 3) as usize)
    }

    /// One output pixel whose window is inside the frame: its two rows read directly.
    #[inline(always)]
    fn inside(&self, pixel: &mut [u8], (x, y): (i64, i64)) {
        let weights = window_weights(x, y);
        let (top, bottom) = self.window_rows((x, y));
        let (top, bottom) = (&self.pixels[top..][..6], &self.pixels[bottom..][..6]);
        for channel in 0..3 {
            pixel[channel] = blend(
                &weights,
                [
                    top[channel],
                    top[channel + 3],
                    bottom[channel],
                    bottom[channel + 3],
                ]
                .map(i32::from),
            );
        }
    }

    /// One output pixel anywhere: taps outside the frame follow the border rule.
    fn anywhere(&self, pixel: &mut [u8], position: (i64, i64)) {
        if self.window_inside(position) {
            return self.inside(pixel, position);
        }
        let (x, y) = position;
        let weights = window_weights(x, y);
        let (x0, y0) = (x >> SUBPIXEL_BITS, y >> SUBPIXEL_BITS);
        for (channel, value) in pixel.iter_mut().enumerate() {
            let taps = [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)]
                .map(|(x, y)| self.tap(x, y, channel));
            *value = blend(&weights, taps);
        }
    }

    /// The pixel at (x, y), or the border's answer outside the frame.
    fn tap(&self, x: i64, y: i64, channel: usize) -> i32 {
        let (x, y) = match self.border {
            Border::Replicate => (x.clamp(0, self.width - 1), y.clamp(0, self.height - 1)),
            Border::Zero if x < 0 || y < 0 || x >= self.width || y >= self.height => return 0,
            Border::Zero => (x, y),
        };
        i32::from(self.pixels[((y * self.width + x) * 3) as usize + channel])
    }
}

/// The bilinear weights of a position in 1/32 pixels.
#[inline(always)]
fn window_weights(x: i64, y: i64) -> [i32; 4] {
    let step = i64::from(SUBPIXEL_STEPS - 1);
    fixed_point_weights((x & step) as i32, (y & step) as i32)
}

/// The weighted sum of four 8-bit taps, rounded. The weights sum to one, so it stays within
/// 0..=255 and needs no clamp.
#[inline(always)]
fn blend(weights: &[i32; 4], taps: [i32; 4]) -> u8 {
    let sum: i32 = weights.iter().zip(taps).map(|(w, t)| w * t).sum();
    ((sum + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS) as u8
}

/// `value.round_ties_even() as i64`, without the library call that baseline x86-64 makes of
/// it (it has no rounding instruction before SSE4.1, and this runs twice per output pixel):
/// adding 1.5 x 2^52 leaves a double whose exponent is fixed and whose low mantissa bits are
/// the value rounded to even by the default rounding mode, so subtracting the bits of
/// 1.5 x 2^52 gives the integer, with no branch (the loop vectorises). Exact for
/// |value| < 2^51, far beyond any frame position.
#[inline(always)]
fn round_to_even(value: f64) -> i64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    (value + SHIFT).to_bits() as i64 - SHIFT.to_bits() as i64
}

/// The whole frame scaled to `width` x `height` with the same sampler (corners onto corners).
pub fn resize(frame: &RgbImage, width: u32, height: u32) -> RgbImage {
    let whole = PixelRect {
        x_center: frame.width() as f32 / 2.0,
        y_center: frame.height() as f32 / 2.0,
        width: frame.width() as f32,
        height: frame.height() as f32,
        rotation: 0.0,
    };
    crop(frame, &whole, width, height, Border::Replicate)
}

/// The four bilinear weights in 15-bit fixed point for a position `fx`, `fy` (in 1/32 pixel)
/// past the top-left tap. With 32 steps they are exact integers that sum to one, as OpenCV's
/// table holds them.
fn fixed_point_weights(fx: i32, fy: i32) -> [i32; 4] {
    let scale = WEIGHT_ONE / (SUBPIXEL_STEPS * SUBPIXEL_STEPS);
    let (gx, gy) = (SUBPIXEL_STEPS - fx, SUBPIXEL_STEPS - fy);
    [
        gx * gy * scale,
        fx * gy * scale,
        gx * fy * scale,
        fx * fy * scale,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_equals_the_standard_librarys_ties_to_even() {
        let halves = (-4000..4000).map(|i| f64::from(i) / 2.0);
        let near_halves = (-400..400).flat_map(|i| {
            let half = f64::from(i) + 0.5;
            [half.next_down(), half.next_up()]
        });
        let positions = (0..10_000).map(|i| (f64::from(i) * 0.7310585786).sin() * 25_000.0);
        for value in halves.chain(near_halves).chain(positions) {
            assert_eq!(
                round_to_even(value),
                value.round_ties_even() as i64,
                "{value}"
            );
        }
    }

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, 100])
        })
    }

    #[test]
    fn an_unrotated_crop_of_the_same_size_is_a_copy() {
        let frame = gradient(40, 30);
        let rect = PixelRect {
            x_center: 20.0,
            y_center: 15.0,
            width: 40.0,
            height: 30.0,
            rotation: 0.0,
        };
        assert_eq!(crop(&frame, &rect, 40, 30, Border::Replicate), frame);
    }

    #[test]
    fn half_pixel_positions_average_their_neighbours() {
        let frame = gradient(40, 30);
        // Shifted right by half a pixel: each output pixel is the mean of two neighbours.
        let rect = PixelRect {
            x_center: 20.5,
            y_center: 15.0,
            width: 40.0,
            height: 30.0,
            rotation: 0.0,
        };
        let out = crop(&frame, &rect, 40, 30, Border::Replicate);
        assert_eq!(out.get_pixel(10, 10)[0], 42); // (40 + 44) / 2
        // The last column reads past the edge and replicates it.
        assert_eq!(out.get_pixel(39, 10)[0], 156);
    }

    #[test]
    fn zero_border_is_black_and_replicate_border_repeats_the_edge() {
        let frame = gradient(10, 10);
        let rect = PixelRect {
            x_center: 0.0,
            y_center: 5.0,
            width: 10.0,
            height: 10.0,
            rotation: 0.0,
        };
        assert_eq!(
            crop(&frame, &rect, 10, 10, Border::Zero).get_pixel(0, 5).0,
            [0, 0, 0]
        );
        assert_eq!(
            crop(&frame, &rect, 10, 10, Border::Replicate)
                .get_pixel(0, 5)
                .0,
            [0, 20, 100]
        );
    }

    #[test]
    fn a_quarter_turn_rotates_the_content() {
        let frame = gradient(20, 20);
        let rect = PixelRect {
            x_center: 10.0,
            y_center: 10.0,
            width: 20.0,
            height: 20.0,
            rotation: std::f32::consts::FRAC_PI_2,
        };
        let out = crop(&frame, &rect, 20, 20, Border::Replicate);
        // Output pixel (u, v) reads frame (20 - v, u): moving right in the output moves down
        // in the frame.
        assert_eq!(out.get_pixel(5, 3).0[1], frame.get_pixel(17, 5).0[1]);
        assert_eq!(out.get_pixel(5, 3).0[0], frame.get_pixel(17, 5).0[0]);
    }

    #[test]
    fn the_avx2_row_equals_the_scalar_row() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            let mut frame = gradient(40, 30);
            // Noise, so that every channel and tap differs.
            let mut seed = 7u32;
            frame.iter_mut().for_each(|v| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *v = (seed >> 24) as u8;
            });
            let sampler = Sampler {
                pixels: frame.as_raw(),
                width: 40,
                height: 30,
                border: Border::Replicate,
            };
            // Every sub-pixel phase, and windows on the frame's last row and column.
            let positions: Vec<(i64, i64)> = (0..39 * 32)
                .map(|i| (i as i64, ((i * 7) % (29 * 32)) as i64))
                .chain([(38 * 32 + 31, 28 * 32 + 31)])
                .collect();
            let mut vector = vec![0u8; positions.len() * 3];
            let mut scalar = vector.clone();
            // SAFETY: AVX2 was just detected.
            unsafe { sampler.inside_row_avx2(&mut vector, &positions) };
            sampler.inside_row_scalar(&mut scalar, &positions);
            assert_eq!(vector, scalar);
        }
    }

    #[test]
    fn weights_always_sum_to_one() {
        for i in 0..SUBPIXEL_STEPS {
            for j in 0..SUBPIXEL_STEPS {
                let w = fixed_point_weights(i, j);
                assert_eq!(w.iter().sum::<i32>(), WEIGHT_ONE);
            }
        }
    }
}
