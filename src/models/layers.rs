//! The building block shared by both MediaPipe face networks: a depthwise-separable residual
//! block in the BlazeFace style.
//!
//! ```text
//!   x ──> depthwise 3x3 (stride s) ──> pointwise 1x1 (c_in -> c_out) ──> (+) ──> activation
//!   └──> [stride 2: max-pool 2x2] ──> [c_out > c_in: zero channels appended] ──┘
//! ```

use std::sync::Arc;

use burn::module::Module;
use burn::nn::PRelu;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

use crate::models::fused::{self, Activation, FusedBlock, FusedConv};
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
    /// The same block as one fused pass, present when the block lives on the CPU backend.
    #[module(skip)]
    fused: Option<Arc<FusedBlock>>,
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
        let depthwise = loader.depthwise(names.depthwise, channels_in, 3, stride)?;
        let pointwise = loader.conv(
            names.pointwise,
            [channels_in, channels_out],
            1,
            1,
            Padding::Valid,
        )?;
        let prelu = names
            .prelu
            .map(|name| loader.prelu(name, channels_out))
            .transpose()?;
        Ok(Self::new(
            depthwise,
            pointwise,
            prelu,
            shape,
            loader.device(),
        ))
    }

    /// A block from its layers; on the CPU backend it also keeps them in fused form.
    pub fn new(
        depthwise: Conv2d,
        pointwise: Conv2d,
        prelu: Option<PRelu>,
        shape: BlockShape,
        device: &Device,
    ) -> Self {
        let fused = (*device == Device::flex()).then(|| {
            Arc::new(FusedBlock::new(
                &depthwise,
                &pointwise,
                prelu.as_ref(),
                shape.stride,
            ))
        });
        Self {
            fused,
            depthwise,
            pointwise,
            shortcut_pool: (shape.stride == 2)
                .then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            channel_padding: shape.channels_out - shape.channels_in,
            prelu,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self.fused.as_deref() {
            Some(fused) => fused::forward(fused, x),
            None => self.forward_unfused(x),
        }
    }

    /// The block as burn's own operations: what runs on the GPU, and what the fused CPU
    /// pass is tested against.
    pub fn forward_unfused(&self, x: Tensor<4>) -> Tensor<4> {
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

/// What follows a convolution.
#[derive(Debug, Clone, Copy)]
pub enum After<'a> {
    Nothing,
    Relu,
    /// The PReLU of this name.
    Prelu(&'a str),
}

/// A dense convolution and its activation. On the CPU backend, the layers where burn's
/// general convolution is slowest (the stems, the output layers) run fused instead.
#[derive(Module, Debug)]
pub struct Convolution {
    conv: Conv2d,
    prelu: Option<PRelu>,
    relu: bool,
    #[module(skip)]
    fused: Option<Arc<FusedConv>>,
}

impl Convolution {
    pub fn load(
        loader: &LayerLoader<'_>,
        layer: &str,
        channels: [usize; 2],
        (kernel, stride): (usize, usize),
        padding: Padding,
        after: After<'_>,
    ) -> Result<Self, WeightError> {
        let conv = loader.conv(layer, channels, kernel, stride, padding)?;
        let prelu = match after {
            After::Prelu(name) => Some(loader.prelu(name, channels[1])?),
            After::Nothing | After::Relu => None,
        };
        Ok(Self::new(
            conv,
            prelu,
            matches!(after, After::Relu),
            loader.device(),
        ))
    }

    /// The layer from its parts: a PReLU if given, else a ReLU if `relu`, else nothing.
    pub fn new(conv: Conv2d, prelu: Option<PRelu>, relu: bool, device: &Device) -> Self {
        let fused = (*device == Device::flex()).then(|| {
            let activation = match (&prelu, relu) {
                (Some(prelu), _) => Activation::prelu(prelu),
                (None, true) => Activation::Relu,
                (None, false) => Activation::Identity,
            };
            Arc::new(FusedConv::new(&conv, activation))
        });
        Self {
            conv,
            prelu,
            relu,
            fused,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self.fused.as_deref() {
            Some(fused) => fused::forward(fused, x),
            None => self.forward_unfused(x),
        }
    }

    /// burn's operations: what runs on the GPU, and what the fused CPU pass is tested
    /// against.
    pub fn forward_unfused(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        match (&self.prelu, self.relu) {
            (Some(prelu), _) => prelu.forward(x),
            (None, true) => relu(x),
            (None, false) => x,
        }
    }
}

/// PReLU where the file has one, else ReLU.
fn activate(prelu: &Option<PRelu>, x: Tensor<4>) -> Tensor<4> {
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

    /// A layer of the given shape with values from a fixed pseudo-random sequence in [-1, 1).
    fn conv_layer(
        shape: [usize; 4],
        stride: usize,
        groups: usize,
        seed: &mut u64,
        device: &Device,
    ) -> Conv2d {
        let kernel = shape[2];
        Conv2d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(pseudo_random(shape.iter().product(), seed), shape),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(pseudo_random(shape[0], seed), [shape[0]]),
                device,
            ))),
            stride: [stride, stride],
            kernel_size: [kernel, kernel],
            dilation: [1, 1],
            groups,
            padding: PaddingConfig2d::Same,
        }
    }

    fn pseudo_random(count: usize, seed: &mut u64) -> Vec<f32> {
        (0..count)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The fused CPU pass computes what burn's five operations compute, on every kind of
    /// block the two networks have: stride 1 and 2, channels appended or not, PReLU and ReLU,
    /// channel counts that are not whole register tiles (the detector's 28, 42, ...), maps
    /// that are not whole tiles or square, rows too narrow for a chunk of columns inside them
    /// (9 to 2 columns), maps of at most 8 pixels (the small-band product, with an even and
    /// an odd number of channel groups), and a batch of two.
    #[test]
    fn fused_block_matches_burns_operations() {
        let device = Device::flex();
        let mut seed = 7;
        let cases = [
            (block(16, 16, 1), [12, 12], true),
            (block(16, 32, 2), [12, 10], true),
            (block(28, 42, 2), [8, 8], false),
            (block(42, 42, 1), [5, 7], false),
            (block(128, 128, 2), [6, 6], true),
            (block(32, 32, 1), [3, 3], true),
            (block(24, 24, 1), [40, 40], true),
            (block(16, 16, 1), [4, 9], false),
            (block(128, 128, 1), [2, 2], true),
            (block(42, 42, 1), [2, 3], false),
        ];
        for (shape, [height, width], prelu) in cases {
            let BlockShape {
                channels_in: cin,
                channels_out: cout,
                stride,
            } = shape;
            let depthwise = conv_layer([cin, 1, 3, 3], stride, cin, &mut seed, &device);
            let pointwise = conv_layer([cout, cin, 1, 1], 1, 1, &mut seed, &device);
            let prelu = prelu.then(|| prelu_layer(cout, &mut seed, &device));
            let block = ResidualBlock::new(depthwise, pointwise, prelu, shape, &device);
            let input = random_batch_of_two([cin, height, width], &mut seed, &device);
            let what = format!("{shape:?} at {height}x{width}");
            let fused = block.fused.as_deref().expect("loaded for the CPU backend");
            assert_both_paths_close(fused, &input, block.forward_unfused(input.clone()), &what);
        }
    }

    /// The fused convolution against burn's, on the networks' kinds: the landmark stems (3x3
    /// stride 2, PReLU; also on a map whose rows end mid-tile, and VALID, both read from split
    /// rows in place), the detector's (5x5 stride 2, ReLU, here on a non-square map), a
    /// stride-2 one on an odd width, the heads' 1x1 projections (PReLU), and the output layers
    /// (VALID, as large as the map, no activation).
    #[test]
    fn fused_convolution_matches_burns_operations() {
        let device = Device::flex();
        let mut seed = 11;
        // ([out, in, kernel], stride, SAME, [height, width], PReLU, ReLU)
        let cases = [
            ([16, 3, 3], 2, true, [20, 20], true, false),
            ([16, 3, 3], 2, true, [8, 40], false, true),
            ([8, 3, 3], 2, false, [9, 12], false, false),
            ([24, 3, 5], 2, true, [16, 12], false, true),
            ([8, 3, 3], 2, true, [9, 11], false, false),
            ([20, 32, 1], 1, true, [6, 6], true, false),
            ([30, 32, 3], 3, false, [3, 3], false, false),
            ([1, 32, 3], 3, false, [3, 3], false, false),
        ];
        for ([cout, cin, kernel], stride, same, [height, width], prelu, relu) in cases {
            let mut conv = conv_layer([cout, cin, kernel, kernel], stride, 1, &mut seed, &device);
            if !same {
                conv.padding = PaddingConfig2d::Valid;
            }
            let prelu = prelu.then(|| prelu_layer(cout, &mut seed, &device));
            let layer = Convolution::new(conv, prelu, relu, &device);
            let input = random_batch_of_two([cin, height, width], &mut seed, &device);
            let what = format!("{cout}x{cin}x{kernel} at {height}x{width}");
            let fused = layer.fused.as_deref().expect("loaded for the CPU backend");
            assert_both_paths_close(fused, &input, layer.forward_unfused(input.clone()), &what);
        }
    }

    fn prelu_layer(channels: usize, seed: &mut u64, device: &Device) -> PRelu {
        PRelu {
            alpha: Param::from_tensor(Tensor::from_data(
                TensorData::new(pseudo_random(channels, seed), [channels]),
                device,
            )),
            alpha_value: 0.0,
        }
    }

    fn random_batch_of_two(
        [channels, height, width]: [usize; 3],
        seed: &mut u64,
        device: &Device,
    ) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(
                pseudo_random(2 * channels * height * width, seed),
                [2, channels, height, width],
            ),
            device,
        )
    }

    /// The fused pass with fused multiply-adds and without (whichever this CPU would pick;
    /// without the instruction `mul_add` is a library call, slow but exact) against burn's.
    fn assert_both_paths_close(
        layer: &impl fused::CpuLayer,
        input: &Tensor<4>,
        unfused: Tensor<4>,
        what: &str,
    ) {
        let with_fma = fused::forward_with::<true, _>(layer, input.clone());
        assert_close(with_fma, unfused.clone(), &format!("{what}, FMA"));
        let without = fused::forward_with::<false, _>(layer, input.clone());
        assert_close(without, unfused, &format!("{what}, no FMA"));
    }

    /// Same shape, and every value within 1e-4: the sums are the same but added in another
    /// order, in fused multiply-adds.
    fn assert_close(fused: Tensor<4>, unfused: Tensor<4>, what: &str) {
        assert_eq!(fused.dims(), unfused.dims(), "{what}");
        let (fused, unfused) = (fused.into_data(), unfused.into_data());
        let worst = fused
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(unfused.as_slice::<f32>().unwrap())
            .map(|(a, b)| (a - b).abs())
            // A NaN (an output the fused pass never wrote) is the worst; `f32::max` skips it.
            .fold(
                0.0f32,
                |worst, d| if d.is_nan() || d > worst { d } else { worst },
            );
        assert!(worst < 1e-4, "{what}: differs by {worst}");
    }

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
