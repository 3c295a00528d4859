//! Turning the bytes a client sends (JPEG or PNG) into an RGB frame, refusing what would cost
//! too much before paying for it.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};
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

/// `decode_untrusted`, writing a colour JPEG into `pixels`' allocation: a stream's frames are
/// alike, so a worker that hands each frame's pixels back decodes the next into memory that
/// is already mapped and in its cache, where a fresh buffer of 900 KB was zeroed and faulted
/// in for every frame. This is the decoder `image` runs, with the same options; anything
/// else (PNG, grey or CMYK JPEG, a damaged file) goes through `decode_untrusted`, which also
/// gives the errors.
pub fn decode_reusing(
    bytes: &[u8],
    max_side: u32,
    mut pixels: Vec<u8>,
) -> Result<RgbImage, FrameError> {
    use zune_jpeg::zune_core::{
        bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
    };
    let Some(jpeg) = bytes
        .starts_with(&[0xFF, 0xD8])
        .then(|| through_end_marker(bytes))
        .flatten()
    else {
        return decode_untrusted(bytes, max_side);
    };
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_strict_mode(false);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
    // A frame with Exif may say it is rotated; `decode` turns it upright.
    let colour = decoder.decode_headers().is_ok()
        && decoder.exif().is_none()
        && matches!(
            decoder.input_colorspace(),
            Some(ColorSpace::YCbCr | ColorSpace::RGB)
        );
    let Some((width, height)) = decoder.dimensions().filter(|_| colour) else {
        return decode_untrusted(bytes, max_side);
    };
    if width.max(height) > max_side as usize {
        return Err(FrameError::TooLarge { max_side });
    }
    pixels.resize(width * height * 3, 0);
    let decoded =
        std::panic::catch_unwind(move || decoder.decode_into(&mut pixels).ok().map(|()| pixels));
    match decoded {
        Ok(Some(pixels)) => Ok(RgbImage::from_raw(width as u32, height as u32, pixels)
            .expect("a buffer of width x height x 3")),
        _ => decode_untrusted(bytes, max_side),
    }
}

/// Decodes a JPEG or PNG into RGB: grayscale is expanded, alpha is dropped (MediaPipe's
/// converter does the same), and frames beyond `max_side` are refused from their header.
pub fn decode(bytes: &[u8], max_side: u32) -> Result<RgbImage, FrameError> {
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    let bytes = match image::guess_format(bytes) {
        // Bytes after the end-of-image marker (padding, a line break) are ignored, as OpenCV
        // does. Without the marker the JPEG was cut off: the decoder would fill the rest with
        // grey rather than fail.
        Ok(image::ImageFormat::Jpeg) => through_end_marker(bytes)
            .ok_or_else(|| FrameError::Damaged("truncated JPEG: no end-of-image marker".into()))?,
        Ok(image::ImageFormat::Png) => bytes,
        _ => return Err(FrameError::NotAnImage),
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| FrameError::Damaged(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    reader.limits(limits);
    let refusal = |error| match error {
        ImageError::Limits(_) => FrameError::TooLarge { max_side },
        error => FrameError::Damaged(error.to_string()),
    };
    let mut decoder = reader.into_decoder().map_err(refusal)?;
    // Phones store a photo as the sensor saw it and say in Exif how to turn it; the seed's
    // OpenCV turns it upright, and so do we, so coordinates refer to the upright image.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// What a JPEG or PNG says of itself in its header, read once per frame before it is decoded:
/// its size, for the pixel budget, and what decoding it will take, for the decode memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    /// The decoder's own buffer for the picture.
    decoder_bytes: u64,
}

impl Header {
    /// `None` when the header does not parse (decoding will say why).
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let decoder = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .ok()?
            .into_decoder()
            .ok()?;
        let (width, height) = decoder.dimensions();
        Some(Header {
            width,
            height,
            decoder_bytes: decoder.total_bytes(),
        })
    }

    /// Whether decoding goes ahead: no side over `max_side`.
    pub fn fits(&self, max_side: u32) -> bool {
        self.width.max(self.height) <= max_side
    }

    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The most memory decoding takes at once: the decoder's buffer, a turned copy of it for
    /// an Exif orientation, and the RGB result.
    pub fn decode_cost(&self) -> u64 {
        2 * self.decoder_bytes + 3 * self.pixels()
    }
}

/// A JPEG up to and including its last end-of-image marker, if it has one.
fn through_end_marker(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .windows(2)
        .rposition(|pair| pair == [0xFF, 0xD9])
        .map(|at| &bytes[..at + 2])
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

    #[test]
    fn the_decode_cost_is_read_from_the_header() {
        // 16-bit RGBA: 8 bytes a pixel in the decoder, 3 in the result.
        let deep = image::ImageBuffer::<image::Rgba<u16>, _>::new(64, 32);
        let png = encode(DynamicImage::ImageRgba16(deep), ImageFormat::Png);
        let png = Header::read(&png).unwrap();
        assert_eq!(png.decode_cost(), 2 * 64 * 32 * 8 + 3 * 64 * 32);
        let jpeg = encode(RgbImage::new(40, 30).into(), ImageFormat::Jpeg);
        assert_eq!(
            Header::read(&jpeg).unwrap().decode_cost(),
            2 * 40 * 30 * 3 + 3 * 40 * 30
        );
        // Over the side limit, decoding refuses it before allocating.
        assert!(png.fits(DEFAULT_MAX_SIDE));
        assert!(!png.fits(63));
    }

    /// The reusing decoder gives `decode`'s pixels and errors, whatever buffer it is handed.
    #[test]
    fn decoding_into_a_reused_buffer_changes_nothing() {
        let photo = crate::bench::footage::carphone_frames()
            .unwrap()
            .swap_remove(40);
        let jpeg = encode(photo.into(), ImageFormat::Jpeg);
        let grey_jpeg = encode(
            GrayImage::from_pixel(6, 5, image::Luma([70])).into(),
            ImageFormat::Jpeg,
        );
        let png = encode(
            RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3])).into(),
            ImageFormat::Png,
        );
        let truncated = &jpeg[..jpeg.len() / 2];
        for bytes in [&jpeg[..], &grey_jpeg, &png, truncated, b"not an image"] {
            for spare in [Vec::new(), vec![255; 10], vec![255; 176 * 144 * 3 + 9]] {
                assert_eq!(
                    decode_reusing(bytes, DEFAULT_MAX_SIDE, spare),
                    decode(bytes, DEFAULT_MAX_SIDE)
                );
            }
        }
        assert_eq!(
            decode_reusing(&jpeg, 100, Vec::new()),
            Err(FrameError::TooLarge { max_side: 100 })
        );
    }

    #[test]
    fn bytes_after_the_end_of_image_are_ignored_by_both_decoders() {
        let jpeg = encode(
            RgbImage::from_pixel(16, 8, image::Rgb([200, 10, 10])).into(),
            ImageFormat::Jpeg,
        );
        let expected = decode(&jpeg, DEFAULT_MAX_SIDE).unwrap();
        for tail in [&b"\r\n"[..], &[0; 64], b"trailing junk"] {
            let padded = [&jpeg[..], tail].concat();
            assert_eq!(decode(&padded, DEFAULT_MAX_SIDE).as_ref(), Ok(&expected));
            assert_eq!(
                decode_reusing(&padded, DEFAULT_MAX_SIDE, Vec::new()).as_ref(),
                Ok(&expected)
            );
        }
        // Cut before its end marker, a JPEG stays refused, whatever follows the cut.
        let cut = [&jpeg[..jpeg.len() - 10], b"\r\n"].concat();
        assert!(matches!(
            decode(&cut, DEFAULT_MAX_SIDE),
            Err(FrameError::Damaged(_))
        ));
    }

    #[test]
    fn the_size_a_frame_declares_comes_from_its_header() {
        let png = encode(RgbImage::new(30, 20).into(), ImageFormat::Png);
        let size = |bytes: &[u8]| Header::read(bytes).map(|h| (h.width, h.height));
        assert_eq!(size(&png), Some((30, 20)));
        let jpeg = encode(RgbImage::new(64, 48).into(), ImageFormat::Jpeg);
        assert_eq!(size(&jpeg), Some((64, 48)));
        assert_eq!(size(b"not an image"), None);
    }

    /// A JPEG with an Exif APP1 segment holding only an orientation tag.
    fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes()); // one value
        tiff.extend_from_slice(&orientation.to_le_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no next directory
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn a_photo_tagged_as_rotated_is_decoded_upright() {
        // Left half red, right half blue; Exif 6 says: turn 90 degrees clockwise to view.
        let sensor = RgbImage::from_fn(32, 16, |x, _| {
            if x < 16 {
                image::Rgb([220, 20, 20])
            } else {
                image::Rgb([20, 20, 220])
            }
        });
        let rotated = with_orientation(&encode(sensor.into(), ImageFormat::Jpeg), 6);
        for upright in [
            decode(&rotated, DEFAULT_MAX_SIDE).unwrap(),
            decode_reusing(&rotated, DEFAULT_MAX_SIDE, Vec::new()).unwrap(),
        ] {
            assert_eq!(upright.dimensions(), (16, 32));
            // The sensor's left edge is now the top.
            assert!(
                upright.get_pixel(8, 4).0[0] > 150,
                "{:?}",
                upright.get_pixel(8, 4)
            );
            assert!(
                upright.get_pixel(8, 28).0[2] > 150,
                "{:?}",
                upright.get_pixel(8, 28)
            );
        }
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

    /// The decoders themselves (not only `decode_untrusted`'s guard) refuse damaged frames
    /// without panicking.
    #[test]
    fn damaged_frames_are_errors_never_panics() {
        let photo = crate::bench::footage::carphone_frames()
            .unwrap()
            .swap_remove(10);
        let small = image::imageops::thumbnail(&photo, 48, 40);
        let jpeg = encode(small.clone().into(), ImageFormat::Jpeg);
        let png = encode(small.into(), ImageFormat::Png);
        for original in [&jpeg, &png] {
            crate::mutations::never_panics(original, crate::mutations::cases(300), |bytes| {
                let _ = decode(bytes, DEFAULT_MAX_SIDE);
                let _ = Header::read(bytes);
            });
        }
    }
}
