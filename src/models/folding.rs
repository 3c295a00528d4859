//! Inference-time batch normalisation folded into the layer before it, as ONNX Runtime's graph
//! optimiser does: what runs is the convolution or linear layer alone, with scaled weights and
//! a bias. Shared by the networks whose files keep their normalisations apart (SFace,
//! MiniFASNet).

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PRelu, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

/// Batch normalisation with fixed statistics, as a per-channel `x * scale + shift`.
#[derive(Debug, Clone)]
pub struct Normalisation {
    pub scale: Vec<f64>,
    pub shift: Vec<f64>,
}

impl Normalisation {
    /// From the layer's learnt `gamma` and `beta` and its running `mean` and `variance`.
    pub fn from_statistics(
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        variance: &[f32],
        epsilon: f64,
    ) -> Result<Self, String> {
        let channels = gamma.len();
        if [beta, mean, variance].iter().any(|v| v.len() != channels) {
            return Err("statistics of different lengths".into());
        }
        let scale: Vec<f64> = gamma
            .iter()
            .zip(variance)
            .map(|(&g, &v)| f64::from(g) / (f64::from(v) + epsilon).sqrt())
            .collect();
        let shift = (0..channels)
            .map(|c| f64::from(beta[c]) - f64::from(mean[c]) * scale[c])
            .collect();
        Ok(Self { scale, shift })
    }

    pub fn channels(&self) -> usize {
        self.scale.len()
    }
}

/// How a convolution slides: stride, padding, groups, dilation.
#[derive(Debug, Clone)]
pub struct Sliding {
    pub stride: [usize; 2],
    pub padding: PaddingConfig2d,
    pub groups: usize,
    pub dilation: [usize; 2],
}

/// The convolution of `weights` (`[out, in / groups, kh, kw]`) and `bias`, with `norm` applied
/// to its output folded in.
pub fn folded_conv(
    weights: &[f32],
    shape: &[usize],
    bias: Option<&[f32]>,
    norm: &Normalisation,
    sliding: Sliding,
    device: &Device,
) -> Result<Conv2d, String> {
    let [outputs, per_group, kernel_h, kernel_w] =
        <[usize; 4]>::try_from(shape).map_err(|_| format!("a kernel of shape {shape:?}"))?;
    if norm.channels() != outputs || weights.len() != outputs * per_group * kernel_h * kernel_w {
        return Err(format!(
            "a kernel of shape {shape:?} with {} values before a normalisation of {}",
            weights.len(),
            norm.channels()
        ));
    }
    let taps = per_group * kernel_h * kernel_w;
    let weight: Vec<f32> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (f64::from(w) * norm.scale[i / taps]) as f32)
        .collect();
    let bias: Vec<f32> = (0..outputs)
        .map(|o| {
            let b = bias.map_or(0.0, |b| f64::from(b[o]));
            (b * norm.scale[o] + norm.shift[o]) as f32
        })
        .collect();
    Ok(Conv2d {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [outputs, per_group, kernel_h, kernel_w]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [outputs]),
            device,
        ))),
        stride: sliding.stride,
        kernel_size: [kernel_h, kernel_w],
        dilation: sliding.dilation,
        groups: sliding.groups,
        padding: sliding.padding,
    })
}

/// A PReLU with one slope per channel.
pub fn prelu(slopes: Vec<f32>, device: &Device) -> PRelu {
    let channels = slopes.len();
    PRelu {
        alpha: Param::from_tensor(Tensor::from_data(
            TensorData::new(slopes, [channels]),
            device,
        )),
        alpha_value: 0.0,
    }
}

/// A linear layer from its weight as burn holds it, `[in, out]`, and its bias.
pub fn linear(
    weight: Vec<f32>,
    [inputs, outputs]: [usize; 2],
    bias: Vec<f32>,
    device: &Device,
) -> Linear {
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [inputs, outputs]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [outputs]),
            device,
        ))),
    }
}
