//! A dense convolution and its activation in one pass: per band of output rows, the input
//! patches laid out as the rows of a matrix (im2col), then the product and the activation.
//! It serves the layers with few input channels or a large kernel, where burn's general
//! convolution is slow: the stems (3 channels in) and the 3x3 output layers.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;

use super::{
    Activation, CpuLayer, GroupedWeights, SplitRow, band_shape, bias, columns_inside, dot,
    same_padding_before, values,
};

#[derive(Debug)]
pub struct FusedConv {
    channels_in: usize,
    kernel: usize,
    stride: usize,
    /// TensorFlow's SAME (true) or VALID.
    same: bool,
    /// `[channels_out][channels_in x kernel x kernel]`, the order of the patch rows.
    weights: GroupedWeights,
    /// The same, one output channel per row, for layers whose output is one pixel.
    rows: Vec<f32>,
    activation: Activation,
}

impl FusedConv {
    /// Takes the weights from the burn layer: square kernel and stride, SAME or VALID.
    pub fn new(conv: &Conv2d, activation: Activation) -> Self {
        let [channels_out, channels_in, kernel, kernel_width] = conv.weight.dims();
        assert_eq!(kernel, kernel_width, "square kernels");
        assert_eq!(conv.groups, 1, "a dense convolution");
        assert_eq!(conv.stride[0], conv.stride[1], "one stride");
        let same = match conv.padding {
            PaddingConfig2d::Same => true,
            PaddingConfig2d::Valid => false,
            ref other => panic!("SAME or VALID padding, not {other:?}"),
        };
        let bias = bias(conv);
        assert_eq!(bias.len(), channels_out);
        let rows = values(conv.weight.val());
        Self {
            channels_in,
            kernel,
            stride: conv.stride[0],
            same,
            weights: GroupedWeights::new(&rows, bias),
            rows,
            activation,
        }
    }

    /// A VALID layer as large as its input (the output layers): its one patch is the input
    /// itself, so each output is a dot product, computed along the input rather than on a
    /// tile of pixels that would be one pixel wide.
    #[inline(always)]
    fn whole_map<const FMA: bool>(&self, input: &[f32], output: &mut [f32]) {
        let inputs = self.weights.inputs;
        for (channel, (out, weights)) in output
            .iter_mut()
            .zip(self.rows.chunks_exact(inputs))
            .enumerate()
        {
            let mut sum = [dot::<FMA>(weights, input) + self.weights.bias[channel]];
            self.activation.apply(channel, &mut sum);
            *out = sum[0];
        }
    }

    /// TensorFlow's SAME padding before the first row and column; none for VALID.
    fn padding_before(&self, (height, width): (usize, usize)) -> (usize, usize) {
        let (out_height, out_width) = self.output_size(height, width);
        if self.same {
            (
                same_padding_before(height, out_height, self.kernel, self.stride),
                same_padding_before(width, out_width, self.kernel, self.stride),
            )
        } else {
            (0, 0)
        }
    }

    /// Stride 2 with no padding before the first row or column (the stems: SAME on an even
    /// size with a 3x3 kernel). Patch row `(ci, ky, kx)` of output row `r` is then a run of
    /// input row `2r + ky` split into even and odd columns, from column `kx` on, so the
    /// product reads it in place an output row at a time, where copying the patches into a
    /// band first cost a third of the stem's time.
    #[inline(always)]
    fn run_on_split_rows<const FMA: bool>(
        &self,
        input: &[f32],
        (height, width): (usize, usize),
        output: &mut [f32],
    ) {
        let (out_height, out_width) = self.output_size(height, width);
        let kernel = self.kernel;
        // One per (ci, ky), the order of the patch rows.
        let mut splits: Vec<SplitRow> = (0..self.channels_in * kernel)
            .map(|_| SplitRow::new(width))
            .collect();
        let plane = height * width;
        for out_row in 0..out_height {
            // Row `ky + 2` of the output row before is row `ky` of this one: those splits are
            // kept (the last row of a 3x3 kernel, split once rather than twice).
            let kept = if out_row == 0 {
                0
            } else {
                kernel.saturating_sub(2)
            };
            for (ci, splits) in splits.chunks_exact_mut(kernel).enumerate() {
                if kept > 0 {
                    splits.rotate_left(2);
                }
                for (ky, split) in splits.iter_mut().enumerate().skip(kept) {
                    match 2 * out_row + ky {
                        y if y < height => split.split(&input[ci * plane + y * width..][..width]),
                        _ => split.zero(),
                    }
                }
            }
            let patch_rows: Vec<&[f32]> = splits
                .iter()
                .flat_map(|split| (0..kernel).map(|kx| split.every_other_from(kx)))
                .collect();
            self.weights.multiply_band::<FMA>(
                |row| patch_rows[row],
                out_width,
                output,
                (out_height * out_width, out_row * out_width),
                |channel, out| self.activation.apply(channel, out),
            );
        }
    }

    /// The patch rows of one band: row `(ci, ky, kx)` holds, for each output pixel of the
    /// band, the input value under that tap (zero in the padding).
    #[inline(always)]
    fn patches_band(
        &self,
        input: &[f32],
        (height, width): (usize, usize),
        first_row: usize,
        rows: usize,
        band: &mut [f32],
        band_stride: usize,
    ) {
        let (_, out_width) = self.output_size(height, width);
        let (pad_top, pad_left) = self.padding_before((height, width));
        let taps = self.kernel * self.kernel;
        let mut split = SplitRow::new(width);
        for ci in 0..self.channels_in {
            let plane = &input[ci * height * width..][..height * width];
            for ky in 0..self.kernel {
                for r in 0..rows {
                    let y = ((first_row + r) * self.stride + ky).checked_sub(pad_top);
                    let in_row = y
                        .filter(|&y| y < height)
                        .map(|y| &plane[y * width..][..width]);
                    if let (Some(in_row), 2) = (in_row, self.stride) {
                        split.split(in_row);
                    }
                    for kx in 0..self.kernel {
                        let row = (ci * taps + ky * self.kernel + kx) * band_stride;
                        let out = &mut band[row + r * out_width..][..out_width];
                        let Some(in_row) = in_row else {
                            out.fill(0.0);
                            continue;
                        };
                        let shift = kx as isize - pad_left as isize;
                        let (columns, first_tap) =
                            columns_inside(width, out_width, self.stride, shift);
                        let inside = match self.stride {
                            1 => &in_row[first_tap..],
                            _ => split.every_other_from(first_tap),
                        };
                        out[..columns.start].fill(0.0);
                        out[columns.end..].fill(0.0);
                        let count = columns.len();
                        out[columns].copy_from_slice(&inside[..count]);
                    }
                }
            }
        }
    }
}

/// `[N, channels_in, H, W]` -> `[N, channels_out, H', W']`.
impl CpuLayer for FusedConv {
    fn channels_in(&self) -> usize {
        self.channels_in
    }

    fn channels_out(&self) -> usize {
        self.weights.channels_out
    }

    fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let size = |n: usize| match self.same {
            true => n.div_ceil(self.stride),
            false => (n - self.kernel) / self.stride + 1,
        };
        (size(height), size(width))
    }

    #[inline(always)]
    fn run_with<const FMA: bool>(
        &self,
        input: &[f32],
        (height, width): (usize, usize),
        output: &mut [f32],
    ) {
        let (out_height, out_width) = self.output_size(height, width);
        if (out_height, out_width, height, width) == (1, 1, self.kernel, self.kernel) && !self.same
        {
            return self.whole_map::<FMA>(input, output);
        }
        assert!(
            matches!(self.stride, 1 | 2),
            "the networks' convolutions larger than one output pixel have stride 1 or 2"
        );
        if self.stride == 2 && self.padding_before((height, width)) == (0, 0) {
            return self.run_on_split_rows::<FMA>(input, (height, width), output);
        }
        let (band_rows, band_stride) = band_shape(out_height, out_width);
        let mut band = vec![0.0f32; self.weights.inputs * band_stride];
        let out_plane = out_height * out_width;
        for first_row in (0..out_height).step_by(band_rows) {
            let rows = band_rows.min(out_height - first_row);
            let pixels = rows * out_width;
            self.patches_band(
                input,
                (height, width),
                first_row,
                rows,
                &mut band,
                band_stride,
            );
            let offset = first_row * out_width;
            self.weights.multiply_band::<FMA>(
                |row| &band[row * band_stride..],
                pixels,
                output,
                (out_plane, offset),
                |channel, out| self.activation.apply(channel, out),
            );
        }
    }
}
