//! The networks' costly layers as single passes over the CPU's caches, for the CPU backend.
//!
//! burn's CPU backend runs a residual block as five operations, each a full pass over the
//! activation map, and its general convolution is slow on the few-channel first layer; those,
//! not arithmetic, were most of the landmark model's time (BENCHMARKS.md). Here a layer is
//! computed a band of output rows at a time: the band's inputs to the matrix product (the
//! depthwise output of a block, the patches of a convolution) stay in a buffer that fits the
//! L1 cache, and the product, the shortcut and the activation read them from there and write
//! the layer's output once.
//!
//! - `block.rs`: the residual block (depthwise 3x3, pointwise 1x1, shortcut, activation).
//! - `conv.rs`: a dense convolution with its activation (the stems, the output layers).
//!
//! Layout is burn's, `[N, C, H, W]`, so these layers run between burn's own operations with
//! no reordering, and the weights are taken from the burn layers they replace. The product is
//! vectorised over pixels: a tile of `PIXELS` pixels times `OUTS` output channels sits in
//! registers while the input rows stream past. Tests hold each layer to burn's operations.
//!
//! The GPU path does not use them: there, burn's fused and autotuned kernels run the layers.

pub mod block;
pub mod conv;

use burn::nn::PRelu;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

pub use block::FusedBlock;
pub use conv::FusedConv;

/// Pixels per register tile (two AVX registers of f32).
const PIXELS: usize = 16;
/// Bands of at most this many pixels (the attention model's 2x2 maps) take a tile of one AVX
/// register of pixels and twice `OUTS` output channels.
const SMALL_BAND: usize = 8;
/// Output columns of a depthwise row computed together (one AVX register of f32).
const LANES: usize = 8;
/// Output channels per register tile. 4 x 16 (eight accumulators) measured fastest of the
/// shapes tried on the landmark model: 2 x 32, 3 x 16, 4 x 24, 4 x 32, 6 x 16, 8 x 8, and
/// AVX-512 builds of 4 x 16, 8 x 16 and 8 x 32.
const OUTS: usize = 4;
/// Output pixels per band: the early, large maps have few channels, so a band's buffer stays
/// small (16 KiB at 16 channels, 27 KiB for the stem's 27 patch rows); the late maps with
/// many channels are smaller than a band.
const BAND_PIXELS: usize = 256;

/// What follows the sum.
#[derive(Debug, Clone)]
pub enum Activation {
    Identity,
    Relu,
    /// One slope per output channel.
    Prelu(Vec<f32>),
}

impl Activation {
    pub fn prelu(prelu: &PRelu) -> Self {
        Activation::Prelu(values(prelu.alpha.val()))
    }

    fn apply(&self, channel: usize, values: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Prelu(slopes) => {
                let slope = slopes[channel];
                // A factor chosen per value and an unconditional store: a store only where the
                // value is negative compiles to masked stores, which are slow on AMD cores.
                values
                    .iter_mut()
                    .for_each(|v| *v *= if *v < 0.0 { slope } else { 1.0 });
            }
        }
    }
}

/// A layer that computes one batch item at a time from its input's values.
pub trait CpuLayer: Sync {
    fn channels_in(&self) -> usize;
    fn channels_out(&self) -> usize;
    fn output_size(&self, height: usize, width: usize) -> (usize, usize);
    /// One item: `input` is `[C, H, W]`, `output` `[channels_out, out H, out W]`. `FMA` picks
    /// fused multiply-adds, which only pay where the CPU has them (elsewhere `mul_add` is a
    /// library call); implementations are `#[inline(always)]` so that they are compiled for
    /// the instructions of the caller below.
    fn run_with<const FMA: bool>(&self, input: &[f32], size: (usize, usize), output: &mut [f32]);
}

/// Runs `layer` on `x`, batch items in parallel on the calling rayon pool. Layers get their
/// fused form only when they are loaded for the CPU backend, so the choice of path is made
/// once, there.
pub fn forward(layer: &impl CpuLayer, x: Tensor<4>) -> Tensor<4> {
    forward_items(layer, x, run_item)
}

/// `layer` over `x` with fused multiply-adds (`FMA`) or without, whichever this CPU would
/// pick: the tests hold both paths to burn's operations on every machine.
#[cfg(test)]
pub(crate) fn forward_with<const FMA: bool, L: CpuLayer>(layer: &L, x: Tensor<4>) -> Tensor<4> {
    forward_items(layer, x, |layer: &L, input, size, output| {
        layer.run_with::<FMA>(input, size, output)
    })
}

/// Runs each batch item of `x` through `run`, in parallel on the calling rayon pool.
fn forward_items<L: CpuLayer>(
    layer: &L,
    x: Tensor<4>,
    run: impl Fn(&L, &[f32], (usize, usize), &mut [f32]) + Sync,
) -> Tensor<4> {
    let device = x.device();
    let [batch, channels, height, width] = x.dims();
    assert_eq!(channels, layer.channels_in(), "input channels");
    let input = x
        .into_data()
        .try_into_vec::<f32>()
        .expect("float32 activations");
    let (out_height, out_width) = layer.output_size(height, width);
    let per_output = layer.channels_out() * out_height * out_width;
    let mut output = spare_buffers::take(batch * per_output);
    output
        .par_chunks_mut(per_output)
        .zip(input.par_chunks(channels * height * width))
        .for_each(|(output, input)| run(layer, input, (height, width), output));
    spare_buffers::give_back(input);
    Tensor::from_data(
        TensorData::new(output, [batch, layer.channels_out(), out_height, out_width]),
        &device,
    )
}

/// The activation maps of layers already run on this thread, reused for the next layers'
/// outputs: a fresh buffer costs a zero-fill of the whole map (1-1.5% of the server's CPU), and
/// every layer writes all of its output anyway.
mod spare_buffers {
    use std::cell::RefCell;

    /// Enough for a network's input, output and the map its heads share.
    const KEPT: usize = 3;
    /// Values in the largest buffer kept (4 MiB): a frame's largest map is 147,456, so a
    /// large batch's buffers are freed rather than held by the thread for good.
    const LARGEST_KEPT: usize = 1 << 20;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `len` values, the largest spare one when there is one. Its values are
    /// whatever it held; unit tests fill it with NaN, so that an output value a layer failed
    /// to write fails the comparison with burn's operations.
    pub fn take(len: usize) -> Vec<f32> {
        let mut buffer = SPARE
            .with_borrow_mut(|spare| spare.pop())
            .unwrap_or_default();
        buffer.resize(len, 0.0);
        if cfg!(test) {
            buffer.fill(f32::NAN);
        }
        buffer
    }

    /// Keeps `buffer` for a later `take`, in place of the smallest kept one when there are
    /// enough, unless it is too large; kept sorted by capacity, so that `take` pops the
    /// largest.
    pub fn give_back(buffer: Vec<f32>) {
        if buffer.capacity() > LARGEST_KEPT {
            return;
        }
        SPARE.with_borrow_mut(|spare| {
            let at = spare.partition_point(|kept| kept.capacity() < buffer.capacity());
            spare.insert(at, buffer);
            if spare.len() > KEPT {
                spare.remove(0);
            }
        });
    }
}

/// One batch item, with the widest instructions this CPU has.
fn run_item(layer: &impl CpuLayer, input: &[f32], size: (usize, usize), output: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        return unsafe { run_item_avx2_fma(layer, input, size, output) };
    }
    layer.run_with::<false>(input, size, output);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_item_avx2_fma(
    layer: &impl CpuLayer,
    input: &[f32],
    size: (usize, usize),
    output: &mut [f32],
) {
    layer.run_with::<true>(input, size, output);
}

/// A matrix product's weights, `[output channels][inputs]`, regrouped for the tile loop as
/// `[output group][inputs][OUTS]` (output channels zero-padded to whole groups), so that one
/// input row's weights for a group are adjacent.
#[derive(Debug)]
struct GroupedWeights {
    inputs: usize,
    channels_out: usize,
    values: Vec<f32>,
    /// Zero-padded like `values`.
    bias: Vec<f32>,
}

impl GroupedWeights {
    fn new(weights: &[f32], mut bias: Vec<f32>) -> Self {
        let channels_out = bias.len();
        let inputs = weights.len() / channels_out;
        assert_eq!(
            weights.len(),
            channels_out * inputs,
            "a [outputs][inputs] matrix"
        );
        let groups = channels_out.div_ceil(OUTS);
        let mut values = vec![0.0; groups * inputs * OUTS];
        for co in 0..channels_out {
            for i in 0..inputs {
                values[((co / OUTS) * inputs + i) * OUTS + co % OUTS] = weights[co * inputs + i];
            }
        }
        bias.resize(groups * OUTS, 0.0);
        Self {
            inputs,
            channels_out,
            values,
            bias,
        }
    }

    /// Output group `group`'s weights, `[inputs][OUTS]`, and its biases.
    #[inline(always)]
    fn group(&self, group: usize) -> (&[f32], &[f32; OUTS]) {
        let weights = &self.values[group * self.inputs * OUTS..][..self.inputs * OUTS];
        let bias = self.bias[group * OUTS..][..OUTS]
            .try_into()
            .expect("OUTS values");
        (weights, bias)
    }

    /// The product over a band whose input `i` holds, from `input_row(i)` on, the values of
    /// the band's pixels (padded to whole tiles), bias included, written for output channel
    /// `c` to `output[c * channel_stride + offset..][..pixels]`; then `finish(c, that row)`
    /// for each channel (shortcut, activation). Finishing a channel's whole row in one long
    /// loop costs less than finishing every tile; `finish` has this one call site, where it
    /// is inlined and compiled for the caller's instructions.
    #[inline(always)]
    fn multiply_band<'a, const FMA: bool>(
        &self,
        input_row: impl Fn(usize) -> &'a [f32],
        pixels: usize,
        output: &mut [f32],
        (channel_stride, offset): (usize, usize),
        mut finish: impl FnMut(usize, &mut [f32]),
    ) {
        if pixels <= SMALL_BAND {
            self.small_band_product::<FMA>(input_row, pixels, output, (channel_stride, offset));
        } else {
            self.band_product::<FMA>(input_row, pixels, output, (channel_stride, offset));
        }
        for channel in 0..self.channels_out {
            finish(
                channel,
                &mut output[channel * channel_stride + offset..][..pixels],
            );
        }
    }

    /// The product of `multiply_band`, pixels outermost: a tile's column of the band (16 KiB
    /// at 256 inputs) stays in L1 while every group's weights stream past it.
    #[inline(always)]
    fn band_product<'a, const FMA: bool>(
        &self,
        input_row: impl Fn(usize) -> &'a [f32],
        pixels: usize,
        output: &mut [f32],
        (channel_stride, offset): (usize, usize),
    ) {
        for first_pixel in (0..pixels).step_by(PIXELS) {
            let count = PIXELS.min(pixels - first_pixel);
            for group in 0..self.channels_out.div_ceil(OUTS) {
                let (weights, bias) = self.group(group);
                let tile = tile::<FMA>(&input_row, first_pixel, weights, bias);
                for (lane, sums) in tile.iter().enumerate() {
                    let channel = group * OUTS + lane;
                    if channel >= self.channels_out {
                        break;
                    }
                    let start = channel * channel_stride + offset + first_pixel;
                    if count == PIXELS {
                        let out: &mut [f32; PIXELS] =
                            (&mut output[start..][..PIXELS]).try_into().expect("a tile");
                        *out = *sums;
                    } else {
                        output[start..][..count].copy_from_slice(&sums[..count]);
                    }
                }
            }
        }
    }

    /// The product of `multiply_band` for a band of at most `SMALL_BAND` pixels (the
    /// attention model's 2x2 maps): a tile of that many pixels and two groups of output
    /// channels, so that half its lanes are padding rather than three quarters. An odd last
    /// group is computed twice and its copy dropped.
    #[inline(always)]
    fn small_band_product<'a, const FMA: bool>(
        &self,
        input_row: impl Fn(usize) -> &'a [f32],
        pixels: usize,
        output: &mut [f32],
        (channel_stride, offset): (usize, usize),
    ) {
        let groups = self.channels_out.div_ceil(OUTS);
        for first_group in (0..groups).step_by(2) {
            let pair = [first_group, (first_group + 1).min(groups - 1)];
            let [first, second] = pair.map(|group| self.group(group));
            let sums = small_tile::<FMA>(&input_row, first, second);
            for (lane, sums) in sums.iter().enumerate() {
                let channel = first_group * OUTS + lane;
                if channel >= self.channels_out {
                    break;
                }
                output[channel * channel_stride + offset..][..pixels]
                    .copy_from_slice(&sums[..pixels]);
            }
        }
    }
}

/// Two groups of `OUTS` output channels, each `(weights, bias)`, for the `SMALL_BAND`
/// pixels of a small band, written like `tile` so that the sums stay in registers.
#[inline(always)]
fn small_tile<'a, const FMA: bool>(
    input_row: impl Fn(usize) -> &'a [f32],
    (first_weights, first_bias): (&[f32], &[f32; OUTS]),
    (second_weights, second_bias): (&[f32], &[f32; OUTS]),
) -> [[f32; SMALL_BAND]; 2 * OUTS] {
    let mut first = [[0.0; SMALL_BAND]; OUTS];
    let mut second = [[0.0; SMALL_BAND]; OUTS];
    for (sums, &bias) in first.iter_mut().zip(first_bias) {
        *sums = [bias; SMALL_BAND];
    }
    for (sums, &bias) in second.iter_mut().zip(second_bias) {
        *sums = [bias; SMALL_BAND];
    }
    let rows = first_weights
        .chunks_exact(OUTS)
        .zip(second_weights.chunks_exact(OUTS));
    for (row, (first_row, second_row)) in rows.enumerate() {
        let values: &[f32; SMALL_BAND] = input_row(row)[..SMALL_BAND]
            .try_into()
            .expect("a whole tile");
        for (sums, &weight) in first.iter_mut().zip(first_row) {
            for (sum, &value) in sums.iter_mut().zip(values) {
                *sum = multiply_add::<FMA>(weight, value, *sum);
            }
        }
        for (sums, &weight) in second.iter_mut().zip(second_row) {
            for (sum, &value) in sums.iter_mut().zip(values) {
                *sum = multiply_add::<FMA>(weight, value, *sum);
            }
        }
    }
    let mut sums = [[0.0; SMALL_BAND]; 2 * OUTS];
    sums[..OUTS].copy_from_slice(&first);
    sums[OUTS..].copy_from_slice(&second);
    sums
}

/// `OUTS` output channels for `PIXELS` pixels of the band, bias included: the sums stay in
/// registers while every input row is added in.
#[inline(always)]
fn tile<'a, const FMA: bool>(
    input_row: impl Fn(usize) -> &'a [f32],
    first_pixel: usize,
    weights: &[f32],
    bias: &[f32; OUTS],
) -> [[f32; PIXELS]; OUTS] {
    // Built in place: `bias.map` compiled to a call that returns the sums through memory.
    let mut sums = [[0.0; PIXELS]; OUTS];
    for (sums, &bias) in sums.iter_mut().zip(bias) {
        *sums = [bias; PIXELS];
    }
    for (row, weights) in weights.chunks_exact(OUTS).enumerate() {
        let pixels: &[f32; PIXELS] = input_row(row)[first_pixel..][..PIXELS]
            .try_into()
            .expect("a whole tile");
        for (sums, &weight) in sums.iter_mut().zip(weights) {
            for (sum, &pixel) in sums.iter_mut().zip(pixels) {
                *sum = multiply_add::<FMA>(weight, pixel, *sum);
            }
        }
    }
    sums
}

/// The sum of products of two rows of the same length, kept in `PIXELS` partial sums so that
/// it vectorises.
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let (a, b) = (a.chunks_exact(PIXELS), b.chunks_exact(PIXELS));
    let tail: f32 = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut sums = [0.0f32; PIXELS];
    for (a, b) in a.zip(b) {
        for ((sum, &x), &y) in sums.iter_mut().zip(a).zip(b) {
            *sum = multiply_add::<FMA>(x, y, *sum);
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Band geometry for an output of `out_height x out_width`: rows per band, and the length of
/// each input row of the band, padded to whole tiles (the padding is computed and dropped).
fn band_shape(out_height: usize, out_width: usize) -> (usize, usize) {
    let rows = (BAND_PIXELS / out_width).clamp(1, out_height);
    (rows, (rows * out_width).next_multiple_of(PIXELS))
}

/// TensorFlow's SAME padding before the first row (or column): half the total, rounded down.
fn same_padding_before(size: usize, out_size: usize, kernel: usize, stride: usize) -> usize {
    ((out_size - 1) * stride + kernel).saturating_sub(size) / 2
}

/// The output columns whose tap, `shift` columns right of `column x stride`, lands inside a
/// row of `width`, and the input column of the first of them.
#[inline(always)]
fn columns_inside(
    width: usize,
    out_width: usize,
    stride: usize,
    shift: isize,
) -> (std::ops::Range<usize>, usize) {
    let first = ((-shift).max(0) as usize).div_ceil(stride);
    let reach = width as isize - 1 - shift;
    let last = if reach < 0 {
        0
    } else {
        (reach as usize / stride + 1).min(out_width)
    };
    let first = first.min(last);
    let first_tap = ((first * stride) as isize + shift).clamp(0, width as isize) as usize;
    (first..last, first_tap)
}

/// An input row's even and odd columns apart, for stride-2 layers: each tap of a stride-2
/// output row then reads a contiguous run of one half, where reading every other value of the
/// row took a shuffle per value.
struct SplitRow {
    /// Columns 0, 2, 4, ..., then zeros: the first is the padding column right of an
    /// even-sized row, the rest let a last chunk of `LANES` columns, or a last tile of
    /// `PIXELS`, read past the row's end.
    even: Vec<f32>,
    /// Columns 1, 3, 5, ..., then zeros.
    odd: Vec<f32>,
}

impl SplitRow {
    fn new(width: usize) -> Self {
        let padded = width.div_ceil(2).next_multiple_of(PIXELS) + 1;
        Self {
            even: vec![0.0; padded],
            odd: vec![0.0; padded],
        }
    }

    #[inline(always)]
    fn split(&mut self, row: &[f32]) {
        let pairs = row.chunks_exact(2);
        if let [last] = pairs.remainder() {
            self.even[row.len() / 2] = *last;
        }
        for ((pair, even), odd) in pairs.zip(&mut self.even).zip(&mut self.odd) {
            (*even, *odd) = (pair[0], pair[1]);
        }
    }

    /// A row outside the map.
    #[inline(always)]
    fn zero(&mut self) {
        self.even.fill(0.0);
        self.odd.fill(0.0);
    }

    /// Columns `first`, `first + 2`, `first + 4`, ... of the row, then zeros.
    #[inline(always)]
    fn every_other_from(&self, first: usize) -> &[f32] {
        let half = if first.is_multiple_of(2) {
            &self.even
        } else {
            &self.odd
        };
        &half[first / 2..]
    }
}

#[inline(always)]
fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// A convolution's bias values; MediaPipe's convolutions all have one.
fn bias(conv: &Conv2d) -> Vec<f32> {
    values(conv.bias.as_ref().expect("a bias").val())
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_to_vec::<f32>()
        .expect("float32 weights")
}
