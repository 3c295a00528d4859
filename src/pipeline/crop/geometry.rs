//! Where a crop comes from: the rotated rectangle in frame pixels, the map from output pixels
//! onto it, and what is read outside the frame. The CPU sampler (`cpu.rs`) and the shader
//! (`gpu.rs`) both cut by these.

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
