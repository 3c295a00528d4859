//! Turning 8-bit RGB images into a model's input tensor.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use thiserror::Error;

use crate::models::description::InputDescription;

#[derive(Debug, Error, PartialEq)]
pub enum InputError {
    #[error(
        "image {index} is {width}x{height}, but the model takes {expected_width}x{expected_height}"
    )]
    WrongSize {
        index: usize,
        width: u32,
        height: u32,
        expected_width: usize,
        expected_height: usize,
    },
    #[error("a batch needs at least one image")]
    EmptyBatch,
}

/// Packs images of exactly the model's input size into one `[N, 3, H, W]` tensor, each
/// channel value mapped onto the model's input range.
pub fn images_to_tensor(
    images: &[&RgbImage],
    input: &InputDescription,
    device: &Device,
) -> Result<Tensor<4>, InputError> {
    if images.is_empty() {
        return Err(InputError::EmptyBatch);
    }
    let (width, height) = (input.width, input.height);
    let plane = width * height;
    let mut values = vec![0.0f32; images.len() * 3 * plane];
    for (index, image) in images.iter().enumerate() {
        if image.width() as usize != width || image.height() as usize != height {
            return Err(InputError::WrongSize {
                index,
                width: image.width(),
                height: image.height(),
                expected_width: width,
                expected_height: height,
            });
        }
        let item = &mut values[index * 3 * plane..(index + 1) * 3 * plane];
        for (pixel_index, pixel) in image.pixels().enumerate() {
            for channel in 0..3 {
                item[channel * plane + pixel_index] = input.normalize(pixel[channel]);
            }
        }
    }
    Ok(Tensor::from_data(
        TensorData::new(values, [images.len(), 3, height, width]),
        device,
    ))
}
