//! Cutting rotated regions of frames into model inputs: the geometry both sides share, the
//! CPU sampler (the reference, and what the CPU fallback runs) and its twin, the crop shader
//! on the GPU (`shaders/crop.wgsl`); and `model_input`, a batch of regions cut on either side
//! into one model input.

pub mod cpu;
pub mod geometry;
pub mod gpu;

pub use cpu::{crop, resize, warp};
pub use geometry::{Affine, Border, PixelRect};

use burn::tensor::Tensor;
use image::RgbImage;

use crate::device::ComputeDevice;
use crate::models::description::InputDescription;
use crate::models::input::{InputError, images_to_tensor};
use crate::pipeline::face_mesh::padded_batch_size;
use gpu::{CropJob, crop_on_device};

/// Where a batch of crops is cut, and to what size it is padded. The default: on the CPU, as
/// the batch comes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Placement {
    /// Pad the batch to `padded_batch_size` up to this (a GPU compiles per shape).
    pub padded_batches_up_to: Option<usize>,
    /// On a GPU, cut with the crop shader from the frames' bytes instead of on the CPU.
    pub on_device: bool,
}

/// The model input `[N, 3, H, W]` for each (frame, region): cut on the CPU and uploaded, or
/// cut on the GPU by the crop shader. Padding items are copies of the first: their answers
/// are computed and ignored.
pub fn model_input(
    regions: &[(&RgbImage, PixelRect)],
    input: &InputDescription,
    border: Border,
    placement: Placement,
    device: &ComputeDevice,
) -> Result<Tensor<4>, InputError> {
    let mut regions = regions.to_vec();
    if let (Some(max), Some(&first)) = (placement.padded_batches_up_to, regions.first()) {
        regions.resize(padded_batch_size(regions.len(), max), first);
    }
    let size = (input.width as u32, input.height as u32);
    if placement.on_device && device.is_gpu() {
        // Each distinct frame goes up once, however many regions it holds.
        let mut frames: Vec<&RgbImage> = Vec::new();
        let jobs: Vec<CropJob> = regions
            .iter()
            .map(|&(frame, rect)| {
                let index = frames
                    .iter()
                    .position(|f| std::ptr::eq(*f, frame))
                    .unwrap_or_else(|| {
                        frames.push(frame);
                        frames.len() - 1
                    });
                CropJob { frame: index, rect }
            })
            .collect();
        return Ok(crop_on_device(
            &frames,
            &jobs,
            size,
            border,
            input.range,
            &device.device,
        ));
    }
    let crops: Vec<RgbImage> = regions
        .iter()
        .map(|(frame, rect)| crop(frame, rect, size.0, size.1, border))
        .collect();
    let crops: Vec<&RgbImage> = crops.iter().collect();
    images_to_tensor(&crops, input, &device.device)
}
