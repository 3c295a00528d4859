//! Cutting a rotated region out of a frame into a model input, on the CPU.
//!
//! This is the reference for the GPU crop shader, and what the CPU fallback runs. It reproduces
//! MediaPipe's CPU `ImageToTensorCalculator`, which warps the 8-bit image with OpenCV
//! (`warpPerspective`, `INTER_LINEAR`) so that the rectangle's corners land on the output's
//! corners, and only then converts to float. OpenCV's bilinear filter on 8-bit images works in
//! fixed point (sample positions rounded to 1/32 pixel, 15-bit weights); doing the same here
//! makes our crops equal MediaPipe's to the byte, so the models see identical inputs.

use image::RgbImage;

/// What the sampler reads outside the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// The nearest edge pixel (the landmark model's crop).
    Replicate,
    /// Black (the detector's letterbox).
    Zero,
}

/// A rotated rectangle in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelRect {
    pub x_center: f32,
    pub y_center: f32,
    pub width: f32,
    pub height: f32,
    /// Radians, clockwise in the image.
    pub rotation: f32,
}

/// Sub-pixel positions are quantised to 1/32 pixel, as OpenCV's `INTER_BITS = 5`.
const SUBPIXEL_BITS: i32 = 5;
const SUBPIXEL_STEPS: i32 = 1 << SUBPIXEL_BITS;
/// Bilinear weights are 15-bit fixed point, as OpenCV's `INTER_REMAP_COEF_BITS`.
const WEIGHT_BITS: i32 = 15;
const WEIGHT_ONE: i32 = 1 << WEIGHT_BITS;

/// An affine map from output pixel (u, v) to frame position (x, y):
/// `x = a * u + b * v + c`, `y = d * u + e * v + f`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub d: f64,
    pub e: f64,
    pub f: f64,
}

impl Affine {
    /// Maps output pixel coordinates of an `out_width` x `out_height` image onto `rect`, the
    /// output's corners (0, 0) and (W, H) landing on the rectangle's corners.
    pub fn rect_to_output(rect: &PixelRect, out_width: u32, out_height: u32) -> Self {
        let (sin, cos) = (
            f64::from(rect.rotation).sin(),
            f64::from(rect.rotation).cos(),
        );
        let sx = f64::from(rect.width) / f64::from(out_width);
        let sy = f64::from(rect.height) / f64::from(out_height);
        let (cx, cy) = (f64::from(rect.x_center), f64::from(rect.y_center));
        let (half_w, half_h) = (f64::from(rect.width) / 2.0, f64::from(rect.height) / 2.0);
        // Frame position = centre + R(rotation) * (u * sx - w/2, v * sy - h/2).
        Self {
            a: cos * sx,
            b: -sin * sy,
            c: cx - cos * half_w + sin * half_h,
            d: sin * sx,
            e: cos * sy,
            f: cy - sin * half_w - cos * half_h,
        }
    }
}

/// Bilinear-samples `rect` of `frame` into an `out_width` x `out_height` image.
pub fn crop(
    frame: &RgbImage,
    rect: &PixelRect,
    out_width: u32,
    out_height: u32,
    border: Border,
) -> RgbImage {
    let map = Affine::rect_to_output(rect, out_width, out_height);
    let mut out = RgbImage::new(out_width, out_height);
    let (width, height) = (frame.width() as i64, frame.height() as i64);
    let pixels = frame.as_raw();
    // One tap: the pixel at (x, y), or the border's answer outside the frame.
    let tap = |x: i64, y: i64, channel: usize| -> i32 {
        let (x, y) = match border {
            Border::Replicate => (x.clamp(0, width - 1), y.clamp(0, height - 1)),
            Border::Zero if x < 0 || y < 0 || x >= width || y >= height => return 0,
            Border::Zero => (x, y),
        };
        i32::from(pixels[((y * width + x) * 3) as usize + channel])
    };
    // One output pixel from its position (x, y) in 1/32 frame pixels.
    let sample = |pixel: &mut [u8], x: i64, y: i64| {
        let (x0, y0) = (x >> SUBPIXEL_BITS, y >> SUBPIXEL_BITS);
        let fx = (x & i64::from(SUBPIXEL_STEPS - 1)) as i32;
        let fy = (y & i64::from(SUBPIXEL_STEPS - 1)) as i32;
        let weights = fixed_point_weights(fx, fy);
        let blend = |taps: [i32; 4]| {
            let sum = weights[0] * taps[0]
                + weights[1] * taps[1]
                + weights[2] * taps[2]
                + weights[3] * taps[3];
            ((sum + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS).clamp(0, 255) as u8
        };
        if x0 >= 0 && y0 >= 0 && x0 + 1 < width && y0 + 1 < height {
            // The whole 2x2 window is inside the frame (nearly every pixel of a face crop):
            // read its two rows directly, no border rule per tap.
            let top = ((y0 * width + x0) * 3) as usize;
            let bottom = top + (width * 3) as usize;
            let (top, bottom) = (&pixels[top..top + 6], &pixels[bottom..bottom + 6]);
            for channel in 0..3 {
                pixel[channel] = blend([
                    i32::from(top[channel]),
                    i32::from(top[channel + 3]),
                    i32::from(bottom[channel]),
                    i32::from(bottom[channel + 3]),
                ]);
            }
        } else {
            for channel in 0..3 {
                pixel[channel] = blend([
                    tap(x0, y0, channel),
                    tap(x0 + 1, y0, channel),
                    tap(x0, y0 + 1, channel),
                    tap(x0 + 1, y0 + 1, channel),
                ]);
            }
        }
    };
    let row_length = out_width as usize * 3;
    for (v, row) in out.chunks_exact_mut(row_length).enumerate() {
        for (u, pixel) in row.chunks_exact_mut(3).enumerate() {
            let (u, v) = (u as f64, v as f64);
            // Position in 1/32 pixels, rounded to nearest like OpenCV's saturate_cast.
            let x = round_to_even((map.a * u + map.b * v + map.c) * f64::from(SUBPIXEL_STEPS));
            let y = round_to_even((map.d * u + map.e * v + map.f) * f64::from(SUBPIXEL_STEPS));
            sample(pixel, x, y);
        }
    }
    out
}

/// `value.round_ties_even()`, without the library call that baseline x86-64 makes of it (it
/// has no rounding instruction before SSE4.1, and this runs twice per output pixel): adding
/// and taking away 1.5 x 2^52 leaves a double with no fraction bits, rounded to even by the
/// default rounding mode. Exact for |value| < 2^51, far beyond any frame position.
fn round_to_even(value: f64) -> i64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    ((value + SHIFT) - SHIFT) as i64
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
    fn weights_always_sum_to_one() {
        for i in 0..SUBPIXEL_STEPS {
            for j in 0..SUBPIXEL_STEPS {
                let w = fixed_point_weights(i, j);
                assert_eq!(w.iter().sum::<i32>(), WEIGHT_ONE);
            }
        }
    }
}
