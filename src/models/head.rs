//! The output heads of MediaPipe's landmark networks: residual blocks, a 1x1 projection to 32
//! channels with a PReLU, one residual block at 32 channels, and a VALID convolution as large
//! as what is left of the map, which turns it into the output vector.

use std::borrow::Cow;

use burn::module::Module;
use burn::tensor::Tensor;

use crate::models::layers::{After, BlockNames, BlockShape, Convolution, ResidualBlock, block};
use crate::models::weights::{LayerLoader, Padding, WeightError};

/// Channels of the projection and of the block after it.
const HEAD_CHANNELS: usize = 32;

/// Where a head's tensors are in the file. Numbers are the suffixes of the tensor names.
pub struct HeadLayout {
    /// (shape, [depthwise, pointwise, prelu]) of each block before the projection.
    pub blocks: Cow<'static, [(BlockShape, [usize; 3])]>,
    /// [conv, prelu] of the projection.
    pub projection: [usize; 2],
    /// [depthwise, pointwise, prelu] of the block after the projection.
    pub last_block: [usize; 3],
    /// Name of the output convolution, and its kernel size (= stride = the map's size).
    pub output: &'static str,
    pub output_kernel: usize,
    pub outputs: usize,
}

#[derive(Module, Debug)]
pub struct Head {
    blocks: Vec<ResidualBlock>,
    projection: Convolution,
    last_block: ResidualBlock,
    output: Convolution,
}

impl Head {
    pub fn load(loader: &LayerLoader<'_>, layout: &HeadLayout) -> Result<Self, WeightError> {
        let channels_in = layout.blocks[layout.blocks.len() - 1].0.channels_out;
        Ok(Self {
            blocks: layout
                .blocks
                .iter()
                .map(|(shape, names)| load_block(loader, *shape, *names))
                .collect::<Result<Vec<_>, _>>()?,
            projection: Convolution::load(
                loader,
                &format!("conv2d_{}", layout.projection[0]),
                [channels_in, HEAD_CHANNELS],
                (1, 1),
                Padding::Valid,
                After::Prelu(&format!("p_re_lu_{}", layout.projection[1])),
            )?,
            last_block: load_block(
                loader,
                block(HEAD_CHANNELS, HEAD_CHANNELS, 1),
                layout.last_block,
            )?,
            output: Convolution::load(
                loader,
                layout.output,
                [HEAD_CHANNELS, layout.outputs],
                (layout.output_kernel, layout.output_kernel),
                Padding::Valid,
                After::Nothing,
            )?,
        })
    }

    /// `[N, C, S, S]` -> `[N, outputs]`.
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.projection.forward(x);
        let x = self.output.forward(self.last_block.forward(x));
        let [batch, outputs, _, _] = x.dims();
        x.reshape([batch, outputs])
    }
}

/// A residual block whose tensors are `depthwise_conv2d_{n}`, `conv2d_{n}` and `p_re_lu_{n}`
/// for the three numbers given; a zero means the unnumbered first layer of its kind.
pub fn load_block(
    loader: &LayerLoader<'_>,
    shape: BlockShape,
    [depthwise, pointwise, prelu]: [usize; 3],
) -> Result<ResidualBlock, WeightError> {
    ResidualBlock::load(
        loader,
        shape,
        BlockNames {
            depthwise: &numbered("depthwise_conv2d", depthwise),
            pointwise: &numbered("conv2d", pointwise),
            prelu: Some(&numbered("p_re_lu", prelu)),
        },
    )
}

/// `base_{n}`, or `base` for 0: how Keras names the first layer of a kind and the rest.
pub fn numbered(base: &str, n: usize) -> String {
    match n {
        0 => base.to_owned(),
        n => format!("{base}_{n}"),
    }
}
