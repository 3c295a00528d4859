//! MiniFASNet, Minivision's passive anti-spoofing networks, as burn modules built from the
//! checkpoints' tensors (`weights/anti_spoofing_minifasnet.safetensors`).
//!
//! Input `[N, 3, 80, 80]`, RGB 0-255, a crop around the face (`pipeline::anti_spoofing`);
//! output `[N, 3]`, softmax probabilities of print attack, live face, replay attack. Each
//! network is a MobileFaceNet-style chain: a 3x3 stem and a depthwise 3x3, then three stages of
//! inverted bottlenecks (expand 1x1, depthwise 3x3, project 1x1), each opened by a stride-2
//! bottleneck and followed by residual ones, the V1SE variant ending each stage with a
//! squeeze-and-excitation; then a 1x1 to 512 channels, a depthwise 5x5 over the whole 5x5
//! map, and a linear layer, a batch normalisation and the classifier. Every convolution is
//! followed by batch normalisation, and all but the projections and the last by a PReLU.
//!
//! Channel counts and which blocks exist are read off the tensors themselves (the checkpoints
//! are pruned, each block to its own width), so one loader builds both networks; a file whose
//! tensors do not fit the chain fails naming the tensor. Batch normalisations are folded into
//! the layers before them (`folding`), and the three final linear steps into one.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PRelu, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use crate::models::description::{AntiSpoofingOptions, ModelKind};
use crate::models::folding::{self, Normalisation, Sliding};
use crate::models::weights::{WeightError, WeightFile};

/// Side of a crop, in pixels.
pub const INPUT_SIZE: usize = 80;
/// Classes the networks tell apart.
pub const CLASSES: usize = 3;

/// Both networks, in the order `models/anti_spoofing_minifasnet.toml` lists them.
#[derive(Module, Debug)]
pub struct SpoofDetector {
    pub networks: Vec<MiniFasNet>,
}

impl SpoofDetector {
    pub fn load(file: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        let description = ModelKind::AntiSpoofing.description();
        let fail = |reason: String| WeightError::Graph {
            path: file.path.clone(),
            model: description.name.clone(),
            reason,
        };
        let options = description
            .anti_spoofing
            .expect("the anti-spoofing description has its options");
        let tensors = SafeTensors::deserialize(&file.bytes).map_err(|e| fail(e.to_string()))?;
        let networks = options
            .networks
            .iter()
            .map(|network| {
                let reader = Tensors {
                    file: &tensors,
                    prefix: format!("{}.module.", network.name),
                    options: &options,
                    device,
                };
                MiniFasNet::build(&reader)
                    .map_err(|reason| fail(format!("{}: {reason}", network.name)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }
}

#[derive(Module, Debug)]
pub struct MiniFasNet {
    stem: Vec<ConvUnit>,
    bottlenecks: Vec<Bottleneck>,
    widen: ConvUnit,
    /// The depthwise 5x5 over the whole last map: a learnt pooling to 512 values.
    pool: Conv2d,
    /// `linear`, `bn` and `prob` as one layer, 512 -> 3.
    classifier: Linear,
}

/// A convolution with its batch normalisation folded in, and its PReLU.
#[derive(Module, Debug)]
struct ConvUnit {
    conv: Conv2d,
    prelu: PRelu,
}

impl ConvUnit {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.prelu.forward(self.conv.forward(x))
    }
}

/// Expand 1x1, depthwise 3x3, project 1x1; on residual blocks the input is added back, after
/// the squeeze-and-excitation where there is one.
#[derive(Module, Debug)]
struct Bottleneck {
    expand: ConvUnit,
    depthwise: ConvUnit,
    project: Conv2d,
    excitation: Option<Excitation>,
    #[module(skip)]
    residual: bool,
}

impl Bottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self
            .project
            .forward(self.depthwise.forward(self.expand.forward(x.clone())));
        let y = match &self.excitation {
            Some(excitation) => excitation.forward(y),
            None => y,
        };
        if self.residual { x + y } else { y }
    }
}

/// Squeeze-and-excitation: each channel scaled by a gate computed from every channel's mean.
#[derive(Module, Debug)]
struct Excitation {
    reduce: Linear,
    expand: Linear,
}

impl Excitation {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, _, _] = x.dims();
        let means = x.clone().mean_dim(3).mean_dim(2).reshape([batch, channels]);
        let gate = sigmoid(self.expand.forward(relu(self.reduce.forward(means))));
        x * gate.reshape([batch, channels, 1, 1])
    }
}

impl MiniFasNet {
    /// `[N, 3, 80, 80]` RGB 0-255 in, `[N, 3]` class probabilities out.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        let mut x = input;
        for unit in &self.stem {
            x = unit.forward(x);
        }
        for bottleneck in &self.bottlenecks {
            x = bottleneck.forward(x);
        }
        let x = self.pool.forward(self.widen.forward(x)).flatten(1, 3);
        softmax(self.classifier.forward(x), 1)
    }

    fn build(tensors: &Tensors<'_>) -> Result<Self, String> {
        let stem = vec![
            tensors.conv_unit("conv1", 2, Colours::Swapped)?,
            tensors.conv_unit("conv2_dw", 1, Colours::AsTrained)?,
        ];
        let mut bottlenecks = Vec::new();
        for (opening, stage) in [
            ("conv_23", "conv_3"),
            ("conv_34", "conv_4"),
            ("conv_45", "conv_5"),
        ] {
            bottlenecks.push(tensors.bottleneck(opening, 2, false)?);
            let mut block = 0;
            while tensors.has(&format!("{stage}.model.{block}.conv.conv.weight")) {
                bottlenecks.push(tensors.bottleneck(&format!("{stage}.model.{block}"), 1, true)?);
                block += 1;
            }
            if block == 0 {
                return Err(format!("stage `{stage}` has no blocks"));
            }
        }
        let widen = tensors.conv_unit("conv_6_sep", 1, Colours::AsTrained)?;
        let pool = tensors.conv("conv_6_dw", 1, Colours::AsTrained)?;
        Ok(Self {
            stem,
            bottlenecks,
            widen,
            pool,
            classifier: tensors.classifier()?,
        })
    }
}

/// Whether a convolution's input channels are taken as trained, or reversed: the checkpoints'
/// stems take OpenCV's BGR, ours RGB.
#[derive(Clone, Copy, PartialEq)]
enum Colours {
    AsTrained,
    Swapped,
}

/// One network's tensors in the weight file, read by their names in the checkpoint.
struct Tensors<'a> {
    file: &'a SafeTensors<'a>,
    /// `MiniFASNetV2.module.`: the network, then the checkpoint's DataParallel prefix.
    prefix: String,
    options: &'a AntiSpoofingOptions,
    device: &'a Device,
}

impl Tensors<'_> {
    fn has(&self, name: &str) -> bool {
        self.file.tensor(&format!("{}{name}", self.prefix)).is_ok()
    }

    /// A float32 tensor's values and shape.
    fn read(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .file
            .tensor(&full)
            .map_err(|_| format!("tensor `{full}` is missing"))?;
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor `{full}` is {:?}, not F32", view.dtype()));
        }
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
        Ok((values, view.shape().to_vec()))
    }

    fn values(&self, name: &str) -> Result<Vec<f32>, String> {
        Ok(self.read(name)?.0)
    }

    fn normalisation(&self, name: &str) -> Result<Normalisation, String> {
        let part = |part: &str| self.values(&format!("{name}.{part}"));
        Normalisation::from_statistics(
            &part("weight")?,
            &part("bias")?,
            &part("running_mean")?,
            &part("running_var")?,
            self.options.batch_norm_epsilon,
        )
        .map_err(|reason| format!("`{name}` has {reason}"))
    }

    /// `{name}.conv` with `{name}.bn` folded in; grouped as the kernel's shape says, padded
    /// to keep the map's size for 3x3 kernels and not at all otherwise.
    fn conv(&self, name: &str, stride: usize, colours: Colours) -> Result<Conv2d, String> {
        let (mut weights, shape) = self.read(&format!("{name}.conv.weight"))?;
        if colours == Colours::Swapped {
            let taps = shape.get(2..).map_or(0, |s| s.iter().product::<usize>());
            if shape.get(1) != Some(&3) {
                return Err(format!("`{name}` does not take three colours"));
            }
            for kernel in weights.chunks_exact_mut(3 * taps) {
                let (blue, rest) = kernel.split_at_mut(taps);
                blue.swap_with_slice(&mut rest[taps..]);
            }
        }
        let norm = self.normalisation(&format!("{name}.bn"))?;
        let (per_group, kernel) = (shape.get(1).copied().unwrap_or(0), shape.get(2).copied());
        // A depthwise kernel has one input per group: as many groups as outputs.
        let groups = if per_group == 1 { shape[0] } else { 1 };
        let padding = match kernel {
            Some(3) => PaddingConfig2d::Explicit(1, 1, 1, 1),
            _ => PaddingConfig2d::Valid,
        };
        let sliding = Sliding {
            stride: [stride, stride],
            padding,
            groups,
            dilation: [1, 1],
        };
        folding::folded_conv(&weights, &shape, None, &norm, sliding, self.device)
            .map_err(|reason| format!("`{name}` has {reason}"))
    }

    /// `conv` and its PReLU.
    fn conv_unit(&self, name: &str, stride: usize, colours: Colours) -> Result<ConvUnit, String> {
        let conv = self.conv(name, stride, colours)?;
        let prelu = folding::prelu(self.values(&format!("{name}.prelu.weight"))?, self.device);
        Ok(ConvUnit { conv, prelu })
    }

    fn bottleneck(&self, name: &str, stride: usize, residual: bool) -> Result<Bottleneck, String> {
        let expand = self.conv_unit(&format!("{name}.conv"), 1, Colours::AsTrained)?;
        let depthwise = self.conv_unit(&format!("{name}.conv_dw"), stride, Colours::AsTrained)?;
        let project = self.conv(&format!("{name}.project"), 1, Colours::AsTrained)?;
        let excitation = if self.has(&format!("{name}.se_module.fc1.weight")) {
            Some(self.excitation(&format!("{name}.se_module"))?)
        } else {
            None
        };
        Ok(Bottleneck {
            expand,
            depthwise,
            project,
            excitation,
            residual,
        })
    }

    /// A 1x1 convolution on a 1x1 map, `{name}` (no bias), with `norm` folded in, as a linear
    /// layer.
    fn pointwise_linear(&self, name: &str, norm: &Normalisation) -> Result<Linear, String> {
        let (weight, shape) = self.read(name)?;
        let (outputs, inputs) = (shape[0], weight.len() / shape[0].max(1));
        if norm.channels() != outputs {
            return Err(format!(
                "`{name}` has {outputs} outputs, its normalisation {}",
                norm.channels()
            ));
        }
        let mut folded = vec![0.0f32; inputs * outputs];
        for o in 0..outputs {
            for i in 0..inputs {
                folded[i * outputs + o] =
                    (f64::from(weight[o * inputs + i]) * norm.scale[o]) as f32;
            }
        }
        let bias = norm.shift.iter().map(|&s| s as f32).collect();
        Ok(folding::linear(
            folded,
            [inputs, outputs],
            bias,
            self.device,
        ))
    }

    fn excitation(&self, name: &str) -> Result<Excitation, String> {
        Ok(Excitation {
            reduce: self.pointwise_linear(
                &format!("{name}.fc1.weight"),
                &self.normalisation(&format!("{name}.bn1"))?,
            )?,
            expand: self.pointwise_linear(
                &format!("{name}.fc2.weight"),
                &self.normalisation(&format!("{name}.bn2"))?,
            )?,
        })
    }

    /// `prob(bn(linear(x)))` as one layer: `P (s * (L x) + t)` is `(P diag(s) L) x + P t`.
    fn classifier(&self) -> Result<Linear, String> {
        let (linear, linear_shape) = self.read("linear.weight")?;
        let norm = self.normalisation("bn")?;
        let (prob, prob_shape) = self.read("prob.weight")?;
        let (embedding, features) = (linear_shape[0], linear_shape[1]);
        if prob_shape != [CLASSES, embedding] || norm.channels() != embedding {
            return Err(format!(
                "a classifier of {prob_shape:?} after an embedding of {linear_shape:?}"
            ));
        }
        let mut weight = vec![0.0f32; features * CLASSES];
        let mut bias = Vec::with_capacity(CLASSES);
        for class in 0..CLASSES {
            let row = &prob[class * embedding..][..embedding];
            for feature in 0..features {
                let sum: f64 = (0..embedding)
                    .map(|e| {
                        f64::from(row[e])
                            * norm.scale[e]
                            * f64::from(linear[e * features + feature])
                    })
                    .sum();
                weight[feature * CLASSES + class] = sum as f32;
            }
            bias.push(
                (0..embedding)
                    .map(|e| f64::from(row[e]) * norm.shift[e])
                    .sum::<f64>() as f32,
            );
        }
        Ok(folding::linear(
            weight,
            [features, CLASSES],
            bias,
            self.device,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::ComputeDevice;

    fn embedded() -> WeightFile {
        WeightFile {
            path: "weights/anti_spoofing_minifasnet.safetensors".into(),
            bytes: ModelKind::AntiSpoofing.embedded_weights().to_vec(),
        }
    }

    #[test]
    fn both_checkpoints_become_networks_of_upstreams_shape() {
        let detector = SpoofDetector::load(&embedded(), &ComputeDevice::cpu().device).unwrap();
        assert_eq!(detector.networks.len(), 2);
        for network in &detector.networks {
            // An opening block and 4, 6 and 2 residual ones.
            assert_eq!(network.bottlenecks.len(), 3 + 4 + 6 + 2);
            assert_eq!(network.pool.weight.dims(), [512, 1, 5, 5]);
            assert_eq!(network.classifier.weight.dims(), [512, CLASSES]);
        }
        // Only V1SE closes each stage with a squeeze-and-excitation.
        let excited = |n: &MiniFasNet| {
            n.bottlenecks
                .iter()
                .filter(|b| b.excitation.is_some())
                .count()
        };
        assert_eq!(excited(&detector.networks[0]), 0);
        assert_eq!(excited(&detector.networks[1]), 3);
    }

    #[test]
    fn a_file_that_is_not_minifasnet_is_refused_naming_it() {
        for bytes in [
            ModelKind::Detector.embedded_weights().to_vec(),
            ModelKind::AntiSpoofing.embedded_weights()[..100_000].to_vec(),
        ] {
            let file = WeightFile {
                path: "elsewhere/spoof.safetensors".into(),
                bytes,
            };
            let message = SpoofDetector::load(&file, &ComputeDevice::cpu().device)
                .unwrap_err()
                .to_string();
            assert!(message.contains("elsewhere/spoof.safetensors"), "{message}");
            assert!(message.contains("anti-spoofing"), "{message}");
        }
    }
}
