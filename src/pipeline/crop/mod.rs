//! Cutting rotated regions of frames into model inputs: the geometry both sides share, the
//! CPU sampler (the reference, and what the CPU fallback runs) and its twin, the crop shader
//! on the GPU (`shaders/crop.wgsl`).

pub mod cpu;
pub mod geometry;
pub mod gpu;

pub use cpu::{crop, resize, warp};
pub use geometry::{Affine, Border, PixelRect};
