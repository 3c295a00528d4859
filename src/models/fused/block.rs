//! The residual block of `layers.rs` in one pass: per band of output rows, the depthwise 3x3
//! into a buffer, then the pointwise product, the shortcut and the activation from it.

use burn::nn::PRelu;
use burn::nn::conv::Conv2d;

use super::{
    Activation, CpuLayer, GroupedWeights, band_shape, bias, multiply_add, same_padding_before,
    values,
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
        let depthwise_bias = bias(depthwise);
        let depthwise = values(depthwise.weight.val());
        assert_eq!(
            depthwise.len(),
            depthwise_bias.len() * TAPS,
            "a 3x3 depthwise kernel"
        );
        let pointwise = GroupedWeights::new(&values(pointwise.weight.val()), bias(pointwise));
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
    /// padding (zeros; on stride 2 over an even size, none at the top or left). `zeros` is a
    /// row of zeros, which rows outside the map read.
    #[inline(always)]
    fn depthwise_band<const FMA: bool>(
        &self,
        channel: usize,
        input: &[f32],
        (height, width): (usize, usize),
        first_row: usize,
        band: &mut [f32],
        zeros: &[f32],
    ) {
        let taps = Taps {
            kernel: self.depthwise[channel * TAPS..][..TAPS]
                .try_into()
                .expect("9 taps"),
            bias: self.depthwise_bias[channel],
        };
        let (out_height, out_width) = self.output_size(height, width);
        let pad_top = same_padding_before(height, out_height, 3, self.stride);
        let pad_left = same_padding_before(width, out_width, 3, self.stride);
        for (row, out) in band.chunks_exact_mut(out_width).enumerate() {
            let rows: [&[f32]; 3] = std::array::from_fn(|ky| {
                ((first_row + row) * self.stride + ky)
                    .checked_sub(pad_top)
                    .filter(|&y| y < height)
                    .map_or(zeros, |y| &input[y * width..][..width])
            });
            match self.stride {
                1 => taps.row::<FMA, 1>(rows, pad_left, out),
                _ => taps.row::<FMA, 2>(rows, pad_left, out),
            }
        }
    }
}

/// One channel's depthwise kernel and bias.
struct Taps {
    kernel: [f32; TAPS],
    bias: f32,
}

/// Output columns computed together in registers.
const LANES: usize = 8;

impl Taps {
    /// One output row from the three input rows under it. Columns whose taps all fall inside
    /// the row go `LANES` at a time (a last, overlapping chunk covers the remainder, which
    /// recomputes a few columns rather than dropping to scalar code); the edge columns, where
    /// the padding is, go one by one.
    #[inline(always)]
    fn row<const FMA: bool, const S: usize>(
        &self,
        rows: [&[f32]; 3],
        pad_left: usize,
        out: &mut [f32],
    ) {
        let width = rows[0].len();
        let out_width = out.len();
        let first = pad_left.div_ceil(S);
        let last = if width + pad_left >= 3 {
            ((width + pad_left - 3) / S + 1).min(out_width)
        } else {
            0
        }
        .max(first);
        let (one_by_one, last) = if last - first >= LANES {
            let chunks = (first..=last - LANES).step_by(LANES).chain([last - LANES]);
            for c in chunks {
                self.chunk::<FMA, S>(rows, c * S - pad_left, &mut out[c..][..LANES]);
            }
            (0..first, last)
        } else {
            (0..last, last)
        };
        for c in one_by_one.chain(last..out_width) {
            out[c] = self.column::<FMA, S>(rows, c, pad_left);
        }
    }

    /// `LANES` output columns whose first tap is input column `x0`.
    #[inline(always)]
    fn chunk<const FMA: bool, const S: usize>(
        &self,
        rows: [&[f32]; 3],
        x0: usize,
        out: &mut [f32],
    ) {
        let mut sums = [self.bias; LANES];
        for (ky, row) in rows.iter().enumerate() {
            let span = &row[x0..][..(LANES - 1) * S + 3];
            for kx in 0..3 {
                let weight = self.kernel[ky * 3 + kx];
                for (lane, sum) in sums.iter_mut().enumerate() {
                    *sum = multiply_add::<FMA>(weight, span[lane * S + kx], *sum);
                }
            }
        }
        out.copy_from_slice(&sums);
    }

    /// One output column, skipping the taps that fall in the padding.
    #[inline(always)]
    fn column<const FMA: bool, const S: usize>(
        &self,
        rows: [&[f32]; 3],
        column: usize,
        pad_left: usize,
    ) -> f32 {
        let mut sum = self.bias;
        for (ky, row) in rows.iter().enumerate() {
            for kx in 0..3 {
                if let Some(&value) = (column * S + kx)
                    .checked_sub(pad_left)
                    .and_then(|x| row.get(x))
                {
                    sum = multiply_add::<FMA>(self.kernel[ky * 3 + kx], value, sum);
                }
            }
        }
        sum
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
        // The max-pooled shortcut of the band, on stride 2 only.
        let pooled_length = if self.stride == 2 { band.len() } else { 0 };
        let mut pooled = vec![0.0f32; pooled_length];
        // What rows above or below the map read.
        let zeros = vec![0.0f32; width];
        let plane = height * width;
        let out_plane = out_height * out_width;
        for first_row in (0..out_height).step_by(band_rows) {
            let rows = band_rows.min(out_height - first_row);
            let pixels = rows * out_width;
            for ci in 0..channels_in {
                let input = &input[ci * plane..][..plane];
                let band = &mut band[ci * band_stride..][..pixels];
                self.depthwise_band::<FMA>(ci, input, (height, width), first_row, band, &zeros);
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
