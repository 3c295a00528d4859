//! Drawing faces over a frame, for a person to check what the service sees.

use image::{Rgb, RgbImage};

use crate::pipeline::face_mesh::FaceLandmarks;

const POINT_COLOUR: Rgb<u8> = Rgb([40, 255, 80]);
const BOX_COLOUR: Rgb<u8> = Rgb([255, 60, 40]);

/// A copy of `frame` with each face's landmarks as dots and its bounding box as a rectangle.
pub fn draw_faces(frame: &RgbImage, faces: &[FaceLandmarks]) -> RgbImage {
    let mut out = frame.clone();
    // Dots grow with the frame so they stay visible on large images.
    let radius = (frame.width().max(frame.height()) / 400).max(1) as i64;
    for face in faces {
        for &[x, y, _] in &face.points {
            for dy in -radius..radius {
                for dx in -radius..radius {
                    put(&mut out, x as i64 + dx, y as i64 + dy, POINT_COLOUR);
                }
            }
        }
        let [x, y, w, h] = face.bounding_box().map(|v| v as i64);
        for i in x..=x + w {
            put(&mut out, i, y, BOX_COLOUR);
            put(&mut out, i, y + h, BOX_COLOUR);
        }
        for j in y..=y + h {
            put(&mut out, x, j, BOX_COLOUR);
            put(&mut out, x + w, j, BOX_COLOUR);
        }
    }
    out
}

fn put(image: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(image.width()) && y < i64::from(image.height()) {
        image.put_pixel(x as u32, y as u32, colour);
    }
}
