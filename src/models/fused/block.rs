//! The residual block of `layers.rs` in one pass: per band of output rows, the depthwise 3x3
//! into a buffer, then the pointwise product, the shortcut and the activation from it.

use burn::nn::PRelu;
use burn::nn::conv::Conv2d;

use super::{
    Activation, CpuLayer, GroupedWeights, LANES, SplitRow, band_shape, bias, multiply_add, values,
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
        assert!(
            matches!(stride, 1 | 2),
            "the networks' blocks have stride 1 or 2"
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

    fn taps(&self, channel: usize) -> Taps {
        Taps {
            kernel: self.depthwise[channel * TAPS..][..TAPS]
                .try_into()
                .expect("9 taps"),
            bias: self.depthwise_bias[channel],
        }
    }

    /// Stride 1: the depthwise 3x3 of one channel for the band's output rows, with
    /// TensorFlow's SAME padding (one zero row or column on each side). `zeros` is a row of
    /// zeros, which rows outside the map read.
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
        let taps = self.taps(channel);
        let row_at = |y: Option<usize>| match y {
            Some(y) if y < height => &input[y * width..][..width],
            _ => zeros,
        };
        for (row, out) in band.chunks_exact_mut(width).enumerate() {
            let y = first_row + row;
            let rows = [
                row_at(y.checked_sub(1)),
                row_at(Some(y)),
                row_at(Some(y + 1)),
            ];
            taps.row::<FMA>(rows, out);
        }
    }

    /// Stride 2: the depthwise 3x3 of one channel for the band's output rows, and the 2x2
    /// max-pool shortcut beside it. Both read the input rows split into even and odd
    /// columns (`splits`, scratch for three rows), where each tap is a contiguous run. On an
    /// even size (which `output_size` asserts) SAME pads nothing before and one zero row and
    /// column after, so output `(r, c)` reads rows `2r..2r + 3` and columns `2c..2c + 3`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn depthwise_and_pool_band<const FMA: bool>(
        &self,
        channel: usize,
        input: &[f32],
        (height, width): (usize, usize),
        first_row: usize,
        (band, pooled): (&mut [f32], &mut [f32]),
        splits: &mut [SplitRow; 3],
    ) {
        let taps = self.taps(channel);
        let out_width = width / 2;
        let rows = band
            .chunks_exact_mut(out_width)
            .zip(pooled.chunks_exact_mut(out_width));
        for (row, (out, pool)) in rows.enumerate() {
            let top = 2 * (first_row + row);
            for (ky, split) in splits.iter_mut().enumerate() {
                match top + ky {
                    y if y < height => split.split(&input[y * width..][..width]),
                    _ => split.zero(),
                }
            }
            taps.split_row::<FMA>(splits, out);
            let (top, bottom) = (&splits[0], &splits[1]);
            let (even_0, odd_0) = (&top.even[..out_width], &top.odd[..out_width]);
            let (even_1, odd_1) = (&bottom.even[..out_width], &bottom.odd[..out_width]);
            for (c, p) in pool.iter_mut().enumerate() {
                *p = even_0[c].max(odd_0[c]).max(even_1[c].max(odd_1[c]));
            }
        }
    }
}

/// One channel's depthwise kernel and bias.
struct Taps {
    kernel: [f32; TAPS],
    bias: f32,
}

impl Taps {
    /// One stride-1 output row from the three input rows under it. Columns whose taps all
    /// fall inside the row go `LANES` at a time (a last, overlapping chunk covers the
    /// remainder, which recomputes a few columns rather than dropping to scalar code); the
    /// two edge columns, where the padding is, go one by one.
    #[inline(always)]
    fn row<const FMA: bool>(&self, rows: [&[f32]; 3], out: &mut [f32]) {
        let width = out.len();
        if width < LANES + 2 {
            (0..width).for_each(|c| out[c] = self.column::<FMA>(rows, c));
            return;
        }
        let inner = 1..width - 1;
        let chunks = (inner.start..=inner.end - LANES)
            .step_by(LANES)
            .chain([inner.end - LANES]);
        for c in chunks {
            self.chunk::<FMA>(rows, c - 1, &mut out[c..][..LANES]);
        }
        for c in [0, width - 1] {
            out[c] = self.column::<FMA>(rows, c);
        }
    }

    /// `LANES` stride-1 output columns whose first tap is input column `x0`.
    #[inline(always)]
    fn chunk<const FMA: bool>(&self, rows: [&[f32]; 3], x0: usize, out: &mut [f32]) {
        let mut sums = [self.bias; LANES];
        for (ky, row) in rows.iter().enumerate() {
            let span = &row[x0..][..LANES + 2];
            for kx in 0..3 {
                let weight = self.kernel[ky * 3 + kx];
                for (lane, sum) in sums.iter_mut().enumerate() {
                    *sum = multiply_add::<FMA>(weight, span[lane + kx], *sum);
                }
            }
        }
        out.copy_from_slice(&sums);
    }

    /// One stride-1 output column, skipping the taps that fall in the padding.
    #[inline(always)]
    fn column<const FMA: bool>(&self, rows: [&[f32]; 3], column: usize) -> f32 {
        let mut sum = self.bias;
        for (ky, row) in rows.iter().enumerate() {
            for kx in 0..3 {
                if let Some(&value) = (column + kx).checked_sub(1).and_then(|x| row.get(x)) {
                    sum = multiply_add::<FMA>(self.kernel[ky * 3 + kx], value, sum);
                }
            }
        }
        sum
    }

    /// One stride-2 output row from the three input rows under it, split: column `c` reads
    /// columns `2c`, `2c + 1` and `2c + 2` of each, the even half at `c`, the odd half at
    /// `c` and the even half at `c + 1` (the zero past the end, for the last column). It goes
    /// `LANES` columns at a time, the last chunk reading into the halves' zero padding and
    /// kept only up to the row's end, so that the 6- and 3-column maps vectorise too.
    #[inline(always)]
    fn split_row<const FMA: bool>(&self, rows: &[SplitRow; 3], out: &mut [f32]) {
        for (chunk, out) in out.chunks_mut(LANES).enumerate() {
            let first = chunk * LANES;
            let mut sums = [self.bias; LANES];
            for (ky, row) in rows.iter().enumerate() {
                let halves = [
                    &row.even[first..],
                    &row.odd[first..],
                    &row.even[first + 1..],
                ];
                for (kx, half) in halves.into_iter().enumerate() {
                    let weight = self.kernel[ky * 3 + kx];
                    for (sum, &value) in sums.iter_mut().zip(&half[..LANES]) {
                        *sum = multiply_add::<FMA>(weight, value, *sum);
                    }
                }
            }
            out.copy_from_slice(&sums[..out.len()]);
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
                height.is_multiple_of(2) && width.is_multiple_of(2),
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
        let mut splits = [
            SplitRow::new(width),
            SplitRow::new(width),
            SplitRow::new(width),
        ];
        let plane = height * width;
        let out_plane = out_height * out_width;
        for first_row in (0..out_height).step_by(band_rows) {
            let rows = band_rows.min(out_height - first_row);
            let pixels = rows * out_width;
            for ci in 0..channels_in {
                let input = &input[ci * plane..][..plane];
                let band = &mut band[ci * band_stride..][..pixels];
                if self.stride == 1 {
                    self.depthwise_band::<FMA>(ci, input, (height, width), first_row, band, &zeros);
                } else {
                    let pooled = &mut pooled[ci * band_stride..][..pixels];
                    self.depthwise_and_pool_band::<FMA>(
                        ci,
                        input,
                        (height, width),
                        first_row,
                        (band, pooled),
                        &mut splits,
                    );
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
                |row| &band[row * band_stride..],
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
