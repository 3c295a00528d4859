//! BlazeFace short range, MediaPipe's face detector, as a burn module.
//!
//! Input `[N, 3, 128, 128]` in [-1, 1]; outputs per batch item 896 anchors' 16 regressors
//! (box centre offset and size, then six keypoints, in input pixels relative to the anchor)
//! and one score logit. The layer table below is read off the op graph in
//! `shared/reference/face_detection_short_range.txt`.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::models::description::ModelKind;
use crate::models::layers::{After, BlockNames, BlockShape, Convolution, ResidualBlock, block};
use crate::models::weights::{LayerLoader, Padding, WeightError, WeightFile};

/// The residual blocks in file order. Block `i` uses the tensors `depthwise_conv2d_{i}` and
/// `conv2d_{i+1}` (the first depthwise layer has no suffix). After block 10 the 16x16 feature
/// map feeds the first pair of heads; after block 15 the 8x8 map feeds the second.
const BLOCKS: [BlockShape; 16] = [
    block(24, 24, 1),
    block(24, 28, 1),
    block(28, 32, 2),
    block(32, 36, 1),
    block(36, 42, 1),
    block(42, 48, 2),
    block(48, 56, 1),
    block(56, 64, 1),
    block(64, 72, 1),
    block(72, 80, 1),
    block(80, 88, 1),
    block(88, 96, 2),
    block(96, 96, 1),
    block(96, 96, 1),
    block(96, 96, 1),
    block(96, 96, 1),
];
/// Index of the last block at 16x16 resolution.
const FINE_BLOCK: usize = 10;
/// Anchors per cell: 2 on the 16x16 grid, 6 on the 8x8 grid (512 + 384 = 896).
const FINE_ANCHORS_PER_CELL: usize = 2;
const COARSE_ANCHORS_PER_CELL: usize = 6;
const COORDS_PER_ANCHOR: usize = 16;

#[derive(Module, Debug)]
pub struct FaceDetector {
    stem: Convolution,
    blocks: Vec<ResidualBlock>,
    fine_scores: Conv2d,
    fine_regressors: Conv2d,
    coarse_scores: Conv2d,
    coarse_regressors: Conv2d,
}

/// The detector's raw outputs for a batch.
#[derive(Debug)]
pub struct DetectorOutput {
    /// `[N, 896, 16]`
    pub regressors: Tensor<3>,
    /// `[N, 896, 1]` logits.
    pub scores: Tensor<3>,
}

impl FaceDetector {
    pub fn load(weights: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        let name = ModelKind::Detector.description().name;
        let loader = LayerLoader::new(weights, &name, device)?;
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(i, shape)| {
                let depthwise = match i {
                    0 => "depthwise_conv2d".to_owned(),
                    i => format!("depthwise_conv2d_{i}"),
                };
                let pointwise = format!("conv2d_{}", i + 1);
                ResidualBlock::load(
                    &loader,
                    *shape,
                    BlockNames {
                        depthwise: &depthwise,
                        pointwise: &pointwise,
                        prelu: None,
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fine = BLOCKS[FINE_BLOCK].channels_out;
        let coarse = BLOCKS[BLOCKS.len() - 1].channels_out;
        let head = |layer: &str, channels_in: usize, channels_out: usize| {
            loader.conv(layer, [channels_in, channels_out], 1, 1, Padding::Same)
        };
        Ok(Self {
            stem: Convolution::load(
                &loader,
                "conv2d",
                [3, BLOCKS[0].channels_in],
                (5, 2),
                Padding::Same,
                After::Relu,
            )?,
            blocks,
            fine_scores: head("classificator_8", fine, FINE_ANCHORS_PER_CELL)?,
            fine_regressors: head(
                "regressor_8",
                fine,
                FINE_ANCHORS_PER_CELL * COORDS_PER_ANCHOR,
            )?,
            coarse_scores: head("classificator_16", coarse, COARSE_ANCHORS_PER_CELL)?,
            coarse_regressors: head(
                "regressor_16",
                coarse,
                COARSE_ANCHORS_PER_CELL * COORDS_PER_ANCHOR,
            )?,
        })
    }

    pub fn forward(&self, input: Tensor<4>) -> DetectorOutput {
        let mut x = self.stem.forward(input);
        for block in &self.blocks[..=FINE_BLOCK] {
            x = block.forward(x);
        }
        let fine = x.clone();
        for block in &self.blocks[FINE_BLOCK + 1..] {
            x = block.forward(x);
        }
        let coarse = x;
        DetectorOutput {
            scores: Tensor::cat(
                vec![
                    per_anchor(self.fine_scores.forward(fine.clone()), 1),
                    per_anchor(self.coarse_scores.forward(coarse.clone()), 1),
                ],
                1,
            ),
            regressors: Tensor::cat(
                vec![
                    per_anchor(self.fine_regressors.forward(fine), COORDS_PER_ANCHOR),
                    per_anchor(self.coarse_regressors.forward(coarse), COORDS_PER_ANCHOR),
                ],
                1,
            ),
        }
    }
}

/// `[N, anchors_per_cell * values, H, W]` -> `[N, H * W * anchors_per_cell, values]`, in
/// TFLite's NHWC order (row, column, anchor), which is the order MediaPipe's anchors follow.
fn per_anchor(head: Tensor<4>, values: usize) -> Tensor<3> {
    let [batch, channels, height, width] = head.dims();
    head.permute([0, 2, 3, 1])
        .reshape([batch, height * width * channels / values, values])
}
