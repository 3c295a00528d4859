//! The building block shared by both MediaPipe face networks: a depthwise-separable residual
//! block in the BlazeFace style.
//!
//! ```text
//!   x ──> depthwise 3x3 (stride s) ──> pointwise 1x1 (c_in -> c_out) ──> (+) ──> activation
//!   └──> [stride 2: max-pool 2x2] ──> [c_out > c_in: zero channels appended] ──┘
//! ```

use burn::module::Module;
use burn::nn::PRelu;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::ops::PadMode;

use crate::models::weights::{LayerLoader, Padding, WeightError};

/// Shape of one residual block: channels in and out, and the stride of its depthwise layer.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    pub channels_in: usize,
    pub channels_out: usize,
    pub stride: usize,
}

/// Shorthand for the layer tables in the model files.
pub const fn block(channels_in: usize, channels_out: usize, stride: usize) -> BlockShape {
    BlockShape {
        channels_in,
        channels_out,
        stride,
    }
}

/// Names of a block's tensors in the weight file.
pub struct BlockNames<'a> {
    pub depthwise: &'a str,
    pub pointwise: &'a str,
    /// The PReLU after the sum; `None` for a plain ReLU (the detector).
    pub prelu: Option<&'a str>,
}

#[derive(Module, Debug)]
pub struct ResidualBlock {
    depthwise: Conv2d,
    pointwise: Conv2d,
    /// Present only on stride-2 blocks, where the shortcut must shrink with the main path.
    shortcut_pool: Option<MaxPool2d>,
    /// Zero channels appended to the shortcut so it matches the pointwise layer's output.
    channel_padding: usize,
    prelu: Option<PRelu>,
}

impl ResidualBlock {
    pub fn load(
        loader: &LayerLoader<'_>,
        shape: BlockShape,
        names: BlockNames<'_>,
    ) -> Result<Self, WeightError> {
        let BlockShape {
            channels_in,
            channels_out,
            stride,
        } = shape;
        Ok(Self {
            depthwise: loader.depthwise(names.depthwise, channels_in, 3, stride)?,
            pointwise: loader.conv(
                names.pointwise,
                [channels_in, channels_out],
                1,
                1,
                Padding::Valid,
            )?,
            shortcut_pool: (stride == 2)
                .then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            channel_padding: channels_out - channels_in,
            prelu: names
                .prelu
                .map(|name| loader.prelu(name, channels_out))
                .transpose()?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let main = self.pointwise.forward(self.depthwise.forward(x.clone()));
        let mut shortcut = match &self.shortcut_pool {
            Some(pool) => pool.forward(x),
            None => x,
        };
        if self.channel_padding > 0 {
            // Pads dimension 1 (channels) of [N, C, H, W] at its end.
            shortcut = shortcut.pad(
                [(0, self.channel_padding), (0, 0), (0, 0)],
                PadMode::Constant(0.0),
            );
        }
        activate(&self.prelu, main + shortcut)
    }
}

/// PReLU where the file has one, else ReLU.
pub fn activate(prelu: &Option<PRelu>, x: Tensor<4>) -> Tensor<4> {
    match prelu {
        Some(prelu) => prelu.forward(x),
        None => relu(x),
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::tensor::{Device, TensorData};

    use super::*;

    /// TensorFlow's SAME rule on a stride-2 3x3 convolution over an even size pads one row at
    /// the bottom and one column at the right, none at the top or left. Checked with a kernel
    /// that picks the top-left tap: output (0, 0) then reads the real pixel (0, 0), where a
    /// symmetric padding would read a zero.
    #[test]
    fn same_padding_on_stride_two_is_bottom_right_like_tensorflow() {
        let device = Device::flex();
        let mut kernel = vec![0.0f32; 9];
        kernel[0] = 1.0;
        let conv = Conv2d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(kernel, [1, 1, 3, 3]),
                &device,
            )),
            bias: None,
            stride: [2, 2],
            kernel_size: [3, 3],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Same,
        };
        let image: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(image, [1, 1, 4, 4]), &device);
        let y = conv.forward(x).into_data().try_to_vec::<f32>().unwrap();
        // Top-left taps of the windows starting at rows/cols 0 and 2: pixels (0,0), (0,2),
        // (2,0), (2,2) of the 4x4 image numbered 1..=16 row by row.
        assert_eq!(y, vec![1.0, 3.0, 9.0, 11.0]);
    }
}
