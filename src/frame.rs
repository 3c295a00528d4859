//! Turning the bytes a client sends (JPEG or PNG) into an RGB frame, refusing what would cost
//! too much before paying for it.

use std::io::Cursor;

use image::{ImageError, ImageReader, Limits, RgbImage, error::LimitErrorKind};
use thiserror::Error;

/// The largest frame accepted by default on either side: 4K video fits, a decompression bomb
/// (a small file that claims 20000x20000 pixels) is refused from its header.
pub const DEFAULT_MAX_SIDE: u32 = 4096;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("the frame is empty")]
    Empty,
    #[error("the frame is not a JPEG or PNG image")]
    NotAnImage,
    #[error("the frame could not be decoded (truncated or damaged): {0}")]
    Damaged(String),
    #[error("the frame is larger than {max_side}x{max_side} pixels")]
    TooLarge { max_side: u32 },
}

/// `decode` for bytes from the network: a decoder that panics on a hostile file costs that
/// frame, answered as damaged, not the thread that decodes it.
pub fn decode_untrusted(bytes: &[u8], max_side: u32) -> Result<RgbImage, FrameError> {
    std::panic::catch_unwind(|| decode(bytes, max_side)).unwrap_or_else(|_| {
        Err(FrameError::Damaged(
            "the decoder failed on this frame".into(),
        ))
    })
}

/// Decodes a JPEG or PNG into RGB: grayscale is expanded, alpha is dropped (MediaPipe's
/// converter does the same), and frames beyond `max_side` are refused from their header.
pub fn decode(bytes: &[u8], max_side: u32) -> Result<RgbImage, FrameError> {
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| FrameError::Damaged(e.to_string()))?;
    match reader.format() {
        // The JPEG decoder fills a cut-off image with grey rather than failing; a complete JPEG
        // ends with the end-of-image marker.
        Some(image::ImageFormat::Jpeg) if !bytes.ends_with(&[0xFF, 0xD9]) => {
            return Err(FrameError::Damaged(
                "truncated JPEG: no end-of-image marker".into(),
            ));
        }
        Some(image::ImageFormat::Jpeg | image::ImageFormat::Png) => {}
        _ => return Err(FrameError::NotAnImage),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    reader.limits(limits);
    match reader.decode() {
        Ok(image) => Ok(image.into_rgb8()),
        Err(ImageError::Limits(error))
            if matches!(error.kind(), LimitErrorKind::DimensionError) =>
        {
            Err(FrameError::TooLarge { max_side })
        }
        Err(ImageError::Limits(_)) => Err(FrameError::TooLarge { max_side }),
        Err(error) => Err(FrameError::Damaged(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use image::{DynamicImage, GrayImage, ImageFormat, RgbaImage};

    use super::*;

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), format)
            .unwrap();
        bytes
    }

    #[test]
    fn grayscale_and_alpha_become_rgb() {
        let gray = encode(
            GrayImage::from_pixel(4, 3, image::Luma([7])).into(),
            ImageFormat::Png,
        );
        let frame = decode(&gray, DEFAULT_MAX_SIDE).unwrap();
        assert_eq!(
            (frame.dimensions(), frame.get_pixel(0, 0).0),
            ((4, 3), [7, 7, 7])
        );
        let rgba = encode(
            RgbaImage::from_pixel(2, 2, image::Rgba([1, 2, 3, 0])).into(),
            ImageFormat::Png,
        );
        assert_eq!(
            decode(&rgba, DEFAULT_MAX_SIDE).unwrap().get_pixel(1, 1).0,
            [1, 2, 3]
        );
    }

    #[test]
    fn bad_frames_get_clear_errors() {
        assert_eq!(decode(b"", DEFAULT_MAX_SIDE), Err(FrameError::Empty));
        assert_eq!(
            decode(b"hello, not an image", DEFAULT_MAX_SIDE),
            Err(FrameError::NotAnImage)
        );
        let jpeg = encode(
            RgbImage::from_pixel(64, 64, image::Rgb([9, 9, 9])).into(),
            ImageFormat::Jpeg,
        );
        for cut in [jpeg.len() / 3, jpeg.len() / 2, jpeg.len() - 1] {
            assert!(matches!(
                decode(&jpeg[..cut], DEFAULT_MAX_SIDE),
                Err(FrameError::Damaged(_))
            ));
        }
    }

    #[test]
    fn a_huge_frame_is_refused_from_its_header() {
        // A real PNG header claiming 20000x20000 pixels, with no pixel data behind it.
        let mut bomb = encode(RgbImage::new(1, 1).into(), ImageFormat::Png);
        bomb[16..20].copy_from_slice(&20000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&20000u32.to_be_bytes());
        // The IHDR chunk's CRC covers its type and data (bytes 12..29).
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode(&bomb, DEFAULT_MAX_SIDE),
            Err(FrameError::TooLarge {
                max_side: DEFAULT_MAX_SIDE
            })
        );
    }

    /// PNG's CRC-32 (ISO 3309, reflected polynomial 0xEDB88320).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
