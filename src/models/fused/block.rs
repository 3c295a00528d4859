//! The residual block of `layers.rs` in one pass: per band of output rows, the depthwise 3x3
//! into a buffer, then the pointwise product, the shortcut and the activation from it.

use burn::nn::PRelu;
use burn::nn::conv::Conv2d;

use super::{
    Activation, CpuLayer, GroupedWeights, band_shape, columns_inside, multiply_add,
    same_padding_before, values, zip_strided,
};

const TAPS: usize = 9;

#[derive(Debug)]
pub struct FusedBlock {
    stride: usize,
    /// `[channels_in][3 x 3]`.
    depthwise: Vec<f32>,
    depthwise_bias: Vec<f32>,
    pointwise: GroupedWeights,
    activation: Activation,
}

impl FusedBlock {
    /// Takes the weights from the block's burn layers; no PReLU means a ReLU (the detector).
    pub fn new(
        depthwise: &Conv2d,
        pointwise: &Conv2d,
        prelu: Option<&PRelu>,
        stride: usize,
    ) -> Self {
        let depthwise_bias = values(depthwise.bias.as_ref().expect("a bias").val());
        let depthwise = values(depthwise.weight.val());
        assert_eq!(
            depthwise.len(),
            depthwise_bias.len() * TAPS,
            "a 3x3 depthwise kernel"
        );
        let pointwise = GroupedWeights::new(
            &values(pointwise.weight.val()),
            values(pointwise.bias.as_ref().expect("a bias").val()),
        );
        Self {
            stride,
            depthwise,
            depthwise_bias,
            pointwise,
            activation: match prelu {
                Some(prelu) => Activation::prelu(prelu),
                None => Activation::Relu,
            },
        }
    }

    /// Depthwise 3x3 of one channel for the band's output rows, with TensorFlow's SAME
    /// padding (zeros; on stride 2 over an even size, none at the top or left).
    #[inline(always)]
    fn depthwise_band<const FMA: bool>(
        &self,
        channel: usize,
        input: &[f32],
        (height, width): (usize, usize),
        first_row: usize,
        band: &mut [f32],
    ) {
        let stride = self.stride;
        let (out_height, out_width) = self.output_size(height, width);
        let pad_top = same_padding_before(height, out_height, 3, stride) as isize;
        let pad_left = same_padding_before(width, out_width, 3, stride) as isize;
        let kernel = &self.depthwise[channel * TAPS..][..TAPS];
        band.fill(self.depthwise_bias[channel]);
        for (row, out) in band.chunks_exact_mut(out_width).enumerate() {
            for ky in 0..3 {
                let in_row = ((first_row + row) * stride) as isize + ky as isize - pad_top;
                if in_row < 0 || in_row >= height as isize {
                    continue;
                }
                let in_row = &input[in_row as usize * width..][..width];
                for kx in 0..3 {
                    let weight = kernel[ky * 3 + kx];
                    let (columns, first_tap) =
                        columns_inside(width, out_width, stride, kx as isize - pad_left);
                    zip_strided(&mut out[columns], &in_row[first_tap..], stride, |o, v| {
                        *o = multiply_add::<FMA>(weight, v, *o)
                    });
                }
            }
        }
    }
}

/// `[N, channels_in, H, W]` -> `[N, channels_out, H / stride, W / stride]`.
impl CpuLayer for FusedBlock {
    fn channels_in(&self) -> usize {
        self.depthwise_bias.len()
    }

    fn channels_out(&self) -> usize {
        self.pointwise.channels_out
    }

    /// TensorFlow's SAME: the input divided by the stride, rounded up.
    fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        if self.stride == 2 {
            // The max-pool shortcut (2x2, VALID) halves exactly only even sizes.
            assert!(
                height % 2 == 0 && width % 2 == 0,
                "stride 2 needs even sizes"
            );
        }
        (height.div_ceil(self.stride), width.div_ceil(self.stride))
    }

    #[inline(always)]
    fn run_with<const FMA: bool>(
        &self,
        input: &[f32],
        (height, width): (usize, usize),
        output: &mut [f32],
    ) {
        let channels_in = self.channels_in();
        let (out_height, out_width) = self.output_size(height, width);
        let (band_rows, band_stride) = band_shape(out_height, out_width);
        let mut band = vec![0.0f32; channels_in * band_stride];
        let mut pooled = vec![
            0.0f32;
            if self.stride == 2 {
                channels_in * band_stride
            } else {
                0
            }
        ];
        let plane = height * width;
        let out_plane = out_height * out_width;
        for first_row in (0..out_height).step_by(band_rows) {
            let rows = band_rows.min(out_height - first_row);
            let pixels = rows * out_width;
            for ci in 0..channels_in {
                let input = &input[ci * plane..][..plane];
                let band = &mut band[ci * band_stride..][..pixels];
                self.depthwise_band::<FMA>(ci, input, (height, width), first_row, band);
                if self.stride == 2 {
                    let pooled = &mut pooled[ci * band_stride..][..pixels];
                    max_pool_band(input, width, first_row, pooled);
                }
            }
            // The shortcut of an output channel: the input (pooled on stride 2), or nothing
            // for the zero channels appended when the block widens.
            let shortcut = |channel: usize| {
                (channel < channels_in).then(|| match self.stride {
                    1 => &input[channel * plane + first_row * width..][..pixels],
                    _ => &pooled[channel * band_stride..][..pixels],
                })
            };
            let offset = first_row * out_width;
            self.pointwise.multiply_band::<FMA>(
                &band,
                band_stride,
                pixels,
                output,
                (out_plane, offset),
                |channel, out| {
                    if let Some(shortcut) = shortcut(channel) {
                        out.iter_mut().zip(shortcut).for_each(|(o, s)| *o += s);
                    }
                    self.activation.apply(channel, out);
                },
            );
        }
    }
}

/// The 2x2 max-pool shortcut of one channel for the band's output rows.
fn max_pool_band(input: &[f32], width: usize, first_row: usize, out: &mut [f32]) {
    let out_width = width / 2;
    for (row, out) in out.chunks_exact_mut(out_width).enumerate() {
        let top = &input[2 * (first_row + row) * width..][..width];
        let bottom = &input[(2 * (first_row + row) + 1) * width..][..width];
        for (c, o) in out.iter_mut().enumerate() {
            *o = top[2 * c]
                .max(top[2 * c + 1])
                .max(bottom[2 * c].max(bottom[2 * c + 1]));
        }
    }
}
