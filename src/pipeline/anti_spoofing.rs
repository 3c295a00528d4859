//! Is a face live? The face box scaled out to each anti-spoofing network's view (2.7x and 4x:
//! enough of the frame to show a photo's edge, a screen's bezel or moiré), cut to 80x80 by the
//! crop code (on the CPU, or by the crop shader with `--gpu-crop`), and both networks run on
//! their crops, each as one batch. A face's score is the networks' mean probability that it is
//! live: 0 spoof .. 1 real.

use image::RgbImage;

use crate::device::ComputeDevice;
use crate::models::anti_spoofing::INPUT_SIZE;
use crate::models::description::{AntiSpoofingOptions, InputDescription, ModelKind};
use crate::models::input::{InputError, images_to_tensor};
use crate::models::{SpoofDetector, rows_per_item};
use crate::pipeline::crop::{Border, PixelRect, Placement, crop, model_input};
use crate::pipeline::face_mesh::padded_batch_size;

/// The anti-spoofing networks, for faces already found.
pub struct SpoofCheck<'m> {
    detector: &'m SpoofDetector,
    device: &'m ComputeDevice,
    input: InputDescription,
    options: AntiSpoofingOptions,
    /// As the mesh's crops: padded to its few batch sizes on a GPU, cut there with
    /// `--gpu-crop`.
    placement: Placement,
}

impl<'m> SpoofCheck<'m> {
    pub fn new(
        detector: &'m SpoofDetector,
        device: &'m ComputeDevice,
        placement: Placement,
    ) -> Self {
        let description = ModelKind::AntiSpoofing.description();
        Self {
            detector,
            device,
            input: description.input,
            options: description
                .anti_spoofing
                .expect("the anti-spoofing description has its options"),
            placement,
        }
    }

    /// The score from which a face counts as real, per the model description.
    pub fn real_threshold(&self) -> f32 {
        self.options.real_threshold
    }

    /// Runs every padded batch size once, so that a GPU compiles its kernels before the first
    /// frame (nothing to do without padding).
    pub fn warm_up(&self) -> Result<(), InputError> {
        let Some(max_batch) = self.placement.padded_batches_up_to else {
            return Ok(());
        };
        let blank = RgbImage::new(INPUT_SIZE as u32, INPUT_SIZE as u32);
        let face_box = [20.0, 20.0, 40.0, 40.0];
        let mut size = 1;
        while size <= max_batch.max(1) {
            let padded = padded_batch_size(size, max_batch);
            self.scores(&vec![(&blank, face_box); padded])?;
            size = padded + 1;
        }
        Ok(())
    }

    /// Each network's crop of the face in `face_box` (x, y, width, height in frame pixels),
    /// cut on the CPU.
    pub fn crops(&self, frame: &RgbImage, face_box: [f32; 4]) -> Vec<RgbImage> {
        self.views(frame, face_box)
            .into_iter()
            .map(|view| {
                crop(
                    frame,
                    &view,
                    INPUT_SIZE as u32,
                    INPUT_SIZE as u32,
                    Border::Replicate,
                )
            })
            .collect()
    }

    /// What each network sees of `frame` around the face in `face_box`.
    fn views(&self, frame: &RgbImage, face_box: [f32; 4]) -> Vec<PixelRect> {
        self.options
            .networks
            .iter()
            .map(|network| {
                let region = view_of(frame.width(), frame.height(), face_box, network.box_scale);
                resized_region(region)
            })
            .collect()
    }

    /// One network's class probabilities for each of `crops` (cut already), in one batch.
    pub fn probabilities(
        &self,
        network: usize,
        crops: &[&RgbImage],
    ) -> Result<Vec<Vec<f32>>, InputError> {
        let input = images_to_tensor(crops, &self.input, &self.device.device)?;
        Ok(rows_per_item(
            self.detector.networks[network].forward(input),
        ))
    }

    /// The score of each face (0 spoof .. 1 real), the faces' crops run as one batch per
    /// network.
    pub fn scores(&self, faces: &[(&RgbImage, [f32; 4])]) -> Result<Vec<f32>, InputError> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let views: Vec<Vec<PixelRect>> = faces
            .iter()
            .map(|&(frame, face_box)| self.views(frame, face_box))
            .collect();
        let networks = self.options.networks.len();
        let mut scores = vec![0.0f32; faces.len()];
        for network in 0..networks {
            let regions: Vec<(&RgbImage, PixelRect)> = faces
                .iter()
                .zip(&views)
                .map(|(&(frame, _), views)| (frame, views[network]))
                .collect();
            let input = model_input(
                &regions,
                &self.input,
                Border::Replicate,
                self.placement,
                self.device,
            )?;
            let rows = rows_per_item(self.detector.networks[network].forward(input));
            for (score, row) in scores.iter_mut().zip(rows) {
                *score += row[self.options.real_class] / networks as f32;
            }
        }
        Ok(scores)
    }
}

/// The inclusive pixel region (left, top, right, bottom) a network sees of a
/// `width` x `height` frame: the face box scaled by `scale` about its centre, the scale
/// lowered until the region fits the frame, then shifted into it, as Silent-Face-Anti-
/// Spoofing's `CropImage` cuts its training crops.
pub fn view_of(width: u32, height: u32, face_box: [f32; 4], scale: f32) -> [u32; 4] {
    let [x, y, box_w, box_h] = face_box.map(f64::from);
    let (max_x, max_y) = (f64::from(width) - 1.0, f64::from(height) - 1.0);
    let box_w = box_w.max(1.0);
    let box_h = box_h.max(1.0);
    let scale = f64::from(scale).min(max_y / box_h).min(max_x / box_w);
    let (half_w, half_h) = (box_w * scale / 2.0, box_h * scale / 2.0);
    let (centre_x, centre_y) = (x + box_w / 2.0, y + box_h / 2.0);
    let (mut left, mut right) = (centre_x - half_w, centre_x + half_w);
    let (mut top, mut bottom) = (centre_y - half_h, centre_y + half_h);
    if left < 0.0 {
        right -= left;
        left = 0.0;
    }
    if top < 0.0 {
        bottom -= top;
        top = 0.0;
    }
    if right > max_x {
        left -= right - max_x;
        right = max_x;
    }
    if bottom > max_y {
        top -= bottom - max_y;
        bottom = max_y;
    }
    // Truncated, as upstream's int(); a face box outside the frame still yields a region in it.
    let pixel = |v: f64, max: f64| v.clamp(0.0, max) as u32;
    [
        pixel(left, max_x),
        pixel(top, max_y),
        pixel(right, max_x),
        pixel(bottom, max_y),
    ]
}

/// The rectangle whose crop samples `region` (inclusive pixels) at OpenCV `resize`'s
/// positions, pixel centres onto pixel centres: output pixel u reads `left + (u + 0.5) *
/// step - 0.5`, where the crop's corner-to-corner map reads `x_center - width / 2 + u * step`.
fn resized_region([left, top, right, bottom]: [u32; 4]) -> PixelRect {
    let (width, height) = ((right - left + 1) as f32, (bottom - top + 1) as f32);
    let size = INPUT_SIZE as f32;
    PixelRect {
        x_center: left as f32 + width / 2.0 + 0.5 * width / size - 0.5,
        y_center: top as f32 + height / 2.0 + 0.5 * height / size - 0.5,
        width,
        height,
        rotation: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_the_scaled_box_shrunk_and_shifted_into_the_frame() {
        // Fits: 2x a 100-pixel box about its centre.
        assert_eq!(
            view_of(640, 480, [200.0, 100.0, 100.0, 100.0], 2.0),
            [150, 50, 350, 250]
        );
        // Near the left edge: shifted right, not cut.
        assert_eq!(
            view_of(640, 480, [0.0, 100.0, 100.0, 100.0], 2.0),
            [0, 50, 200, 250]
        );
        // Larger than the frame: the scale drops to what fits the frame's height.
        let [left, top, right, bottom] = view_of(640, 480, [270.0, 190.0, 150.0, 150.0], 4.0);
        assert_eq!((top, bottom), (0, 479));
        assert_eq!(right - left, 479);
    }
}
