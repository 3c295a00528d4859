//! The detector's SSD anchors, generated from `models/face_detection_short_range.toml` the way
//! MediaPipe's `SsdAnchorsCalculator` does.

use crate::models::description::AnchorOptions;

/// One anchor: a box centre in normalised input coordinates, and a size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub x_center: f32,
    pub y_center: f32,
    pub width: f32,
    pub height: f32,
}

/// The anchors in the order of the detector's outputs: layer by layer (consecutive layers with
/// the same stride share one grid), then row, column, and anchor within the cell.
pub fn generate(options: &AnchorOptions) -> Vec<Anchor> {
    let layers = options.num_layers;
    let mut anchors = Vec::new();
    let mut layer = 0;
    while layer < layers {
        // Every layer with this stride contributes its anchor shapes to the same grid.
        let mut shapes: Vec<(f32, f32)> = Vec::new(); // (scale, aspect ratio)
        let mut last = layer;
        while last < layers && options.strides[last] == options.strides[layer] {
            let scale = layer_scale(options, last);
            if last == 0 && options.reduce_boxes_in_lowest_layer {
                shapes.extend([(0.1, 1.0), (scale, 2.0), (scale, 0.5)]);
            } else {
                shapes.extend(options.aspect_ratios.iter().map(|&ratio| (scale, ratio)));
                if options.interpolated_scale_aspect_ratio > 0.0 {
                    let next = if last == layers - 1 {
                        1.0
                    } else {
                        layer_scale(options, last + 1)
                    };
                    shapes.push((
                        (scale * next).sqrt(),
                        options.interpolated_scale_aspect_ratio,
                    ));
                }
            }
            last += 1;
        }
        let stride = options.strides[layer];
        let rows = options.input_height.div_ceil(stride);
        let columns = options.input_width.div_ceil(stride);
        for y in 0..rows {
            for x in 0..columns {
                for &(scale, ratio) in &shapes {
                    let (width, height) = if options.fixed_anchor_size {
                        (1.0, 1.0)
                    } else {
                        (scale * ratio.sqrt(), scale / ratio.sqrt())
                    };
                    anchors.push(Anchor {
                        x_center: (x as f32 + options.anchor_offset_x) / columns as f32,
                        y_center: (y as f32 + options.anchor_offset_y) / rows as f32,
                        width,
                        height,
                    });
                }
            }
        }
        layer = last;
    }
    anchors
}

/// Scales grow linearly from `min_scale` at the first layer to `max_scale` at the last.
fn layer_scale(options: &AnchorOptions, layer: usize) -> f32 {
    if options.num_layers == 1 {
        (options.min_scale + options.max_scale) / 2.0
    } else {
        options.min_scale
            + (options.max_scale - options.min_scale) * layer as f32
                / (options.num_layers - 1) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelKind;

    #[test]
    fn the_short_range_detector_has_896_anchors_on_two_grids() {
        let description = ModelKind::Detector.description();
        let anchors = generate(description.anchors.as_ref().unwrap());
        assert_eq!(anchors.len(), description.decoding.unwrap().num_boxes);
        // 16x16 grid, 2 anchors per cell, then 8x8 grid, 6 per cell.
        assert_eq!(
            anchors[0],
            Anchor {
                x_center: 0.5 / 16.0,
                y_center: 0.5 / 16.0,
                width: 1.0,
                height: 1.0
            }
        );
        assert_eq!(anchors[1], anchors[0]);
        assert_eq!(anchors[2].x_center, 1.5 / 16.0);
        assert_eq!(anchors[512].x_center, 0.5 / 8.0);
        assert_eq!(anchors[517], anchors[512]);
        assert_eq!(anchors[518].x_center, 1.5 / 8.0);
        let last = anchors[895];
        assert_eq!((last.x_center, last.y_center), (7.5 / 8.0, 7.5 / 8.0));
    }
}
