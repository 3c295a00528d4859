//! SFace, OpenCV Zoo's face recognition network, as a burn module built from its ONNX file.
//!
//! Input `[N, 3, 112, 112]`, RGB 0-255, a face aligned onto ArcFace's five-point template
//! (`pipeline::alignment`); output `[N, 128]`, the face's template before normalisation
//! (`matching` normalises and compares). The network is a MobileNet-style chain: a 3x3 stem and
//! thirteen depthwise-separable pairs, every convolution followed by batch normalisation and
//! PReLU, down to 1024 x 7 x 7; then a batch normalisation, one fully connected layer to 128,
//! and a last batch normalisation.
//!
//! The layers are read off the graph (`crate::onnx`), not off a table: the loader walks the
//! nodes in order, expecting that pattern and nothing else, and folds each batch normalisation
//! into the layer beside it, as ONNX Runtime's graph optimiser does. What runs is convolutions,
//! PReLUs and one linear layer.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PRelu, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use onnx_ir::node::padding::PaddingConfig2d as OnnxPadding;

use crate::models::description::ModelKind;
use crate::models::folding::{self, Normalisation, Sliding};
use crate::models::weights::{WeightError, WeightFile};
use crate::onnx::{self, Argument, Node};

/// Side of the aligned crop, in pixels.
pub const INPUT_SIZE: usize = 112;
/// Values in a template.
pub const TEMPLATE_LEN: usize = 128;

#[derive(Module, Debug)]
pub struct FaceRecognizer {
    /// The graph's own input normalisation, `(x - offset) * scale`, kept out of the stem so
    /// that its zero padding stays zero after normalisation, as in the graph.
    #[module(skip)]
    input_offset: f32,
    #[module(skip)]
    input_scale: f32,
    layers: Vec<ConvolutionUnit>,
    embedding: Linear,
}

/// A convolution with its batch normalisation folded in, and its PReLU.
#[derive(Module, Debug)]
struct ConvolutionUnit {
    conv: Conv2d,
    prelu: PRelu,
}

impl FaceRecognizer {
    pub fn load(file: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        let model = ModelKind::Recognition.description().name;
        let fail = |reason: String| WeightError::Graph {
            path: file.path.clone(),
            model: model.clone(),
            reason,
        };
        let graph = onnx::parse(&file.bytes).map_err(|e| fail(e.to_string()))?;
        let mut nodes = graph
            .nodes
            .iter()
            .filter(|node| !matches!(node, Node::Constant(_)));
        let mut build = || -> Result<Self, String> {
            let mut next = |expected: &str| {
                nodes
                    .next()
                    .ok_or_else(|| format!("the graph ends where {expected} was expected"))
            };
            let input_offset = match next("the input's Sub")? {
                Node::Sub(sub) => scalar(&sub.inputs[1])?,
                other => return Err(unexpected(other, "the input's Sub")),
            };
            let input_scale = match next("the input's Mul")? {
                Node::Mul(mul) => scalar(&mul.inputs[1])?,
                other => return Err(unexpected(other, "the input's Mul")),
            };
            let mut layers = Vec::new();
            let final_norm = loop {
                match next("a Conv or the final BatchNormalization")? {
                    Node::Conv2d(conv) => {
                        let norm = match next("the Conv's BatchNormalization")? {
                            Node::BatchNormalization(bn) => normalisation_of(&bn.inputs, bn)?,
                            other => return Err(unexpected(other, "BatchNormalization")),
                        };
                        let prelu = match next("the Conv's PRelu")? {
                            Node::PRelu(prelu) => values(&prelu.inputs[1])?.0,
                            other => return Err(unexpected(other, "PRelu")),
                        };
                        layers.push(ConvolutionUnit {
                            conv: folded_conv(conv, &norm, device)?,
                            prelu: folding::prelu(prelu, device),
                        });
                    }
                    Node::BatchNormalization(bn) => break normalisation_of(&bn.inputs, bn)?,
                    other => return Err(unexpected(other, "Conv or BatchNormalization")),
                }
            };
            if !matches!(next("Flatten")?, Node::Flatten(_)) {
                return Err("no Flatten after the last convolution".into());
            }
            let linear = match next("the fully connected layer")? {
                Node::Linear(linear) if linear.config.transpose_weight => linear,
                other => return Err(unexpected(other, "Linear (Gemm, transB = 1)")),
            };
            let output_norm = match next("the template's BatchNormalization")? {
                Node::BatchNormalization(bn) => normalisation_of(&bn.inputs, bn)?,
                other => return Err(unexpected(other, "BatchNormalization")),
            };
            if let Some(extra) = nodes.next() {
                return Err(unexpected(extra, "the end of the graph"));
            }
            let embedding = folded_linear(&linear.inputs, &final_norm, &output_norm, device)?;
            Ok(Self {
                input_offset,
                input_scale,
                layers,
                embedding,
            })
        };
        build().map_err(fail)
    }

    /// `[N, 3, 112, 112]` RGB 0-255 in, `[N, 128]` templates out (not normalised).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        let mut x = (input - self.input_offset) * self.input_scale;
        for unit in &self.layers {
            x = unit.prelu.forward(unit.conv.forward(x));
        }
        self.embedding.forward(x.flatten(1, 3))
    }
}

fn unexpected(node: &Node, expected: &str) -> String {
    format!("node `{}` where {expected} was expected", node.name())
}

/// A constant argument's values and shape.
fn values(argument: &Argument) -> Result<(Vec<f32>, Vec<usize>), String> {
    let data = argument
        .value()
        .ok_or_else(|| format!("`{}` is not a constant", argument.name))?;
    let shape = data.shape().to_vec();
    let values = data
        .try_to_vec::<f32>()
        .map_err(|e| format!("`{}` is not float32: {e:?}", argument.name))?;
    Ok((values, shape))
}

fn scalar(argument: &Argument) -> Result<f32, String> {
    match values(argument)?.0.as_slice() {
        [value] => Ok(*value),
        other => Err(format!(
            "`{}` holds {} values, not one",
            argument.name,
            other.len()
        )),
    }
}

/// A BatchNormalization node's statistics as a per-channel `x * scale + shift`.
fn normalisation_of(
    inputs: &[Argument],
    node: &onnx_ir::node::batch_norm::BatchNormalizationNode,
) -> Result<Normalisation, String> {
    let epsilon = match &node.config {
        onnx_ir::node::batch_norm::BatchNormConfig::Static(config) => config.epsilon,
        onnx_ir::node::batch_norm::BatchNormConfig::Runtime(_) => {
            return Err(format!("`{}` has non-constant statistics", node.name));
        }
    };
    let [gamma, beta, mean, variance] = [1, 2, 3, 4].map(|i| {
        inputs
            .get(i)
            .ok_or_else(|| format!("`{}` lacks input {i}", node.name))
            .and_then(values)
            .map(|(v, _)| v)
    });
    Normalisation::from_statistics(&gamma?, &beta?, &mean?, &variance?, epsilon)
        .map_err(|reason| format!("`{}` has {reason}", node.name))
}

/// The convolution of `node` with `norm` applied to its output folded into its weights.
fn folded_conv(
    node: &onnx_ir::node::conv2d::Conv2dNode,
    norm: &Normalisation,
    device: &Device,
) -> Result<Conv2d, String> {
    let config = &node.config;
    let (weights, shape) = values(&node.inputs[1])?;
    let bias = match node.inputs.get(2) {
        Some(bias) if bias.value().is_some() => Some(values(bias)?.0),
        _ => None,
    };
    let padding = match config.padding {
        OnnxPadding::Valid => PaddingConfig2d::Valid,
        OnnxPadding::Explicit(top, left, bottom, right) => {
            PaddingConfig2d::Explicit(top, left, bottom, right)
        }
    };
    let sliding = Sliding {
        stride: config.stride,
        padding,
        groups: config.groups,
        dilation: config.dilation,
    };
    folding::folded_conv(&weights, &shape, bias.as_deref(), norm, sliding, device)
        .map_err(|reason| format!("`{}` has {reason}", node.name))
}

/// The fully connected layer with the normalisation of its input (per channel of the
/// flattened map) and of its output folded in. `inputs` are the Gemm's: the flattened map,
/// the weight `[out, in]`, the bias.
fn folded_linear(
    inputs: &[Argument],
    before: &Normalisation,
    after: &Normalisation,
    device: &Device,
) -> Result<Linear, String> {
    let (weight, shape) = values(&inputs[1])?;
    let [outputs, features] = <[usize; 2]>::try_from(shape.as_slice())
        .map_err(|_| format!("the Gemm's weight has shape {shape:?}"))?;
    let bias = match inputs.get(2) {
        Some(bias) => values(bias)?.0,
        None => vec![0.0; outputs],
    };
    let channels = before.scale.len();
    if channels == 0 || features % channels != 0 || after.scale.len() != outputs {
        return Err(format!(
            "a Gemm of {features} -> {outputs} between normalisations of {channels} and {}",
            after.scale.len()
        ));
    }
    let per_channel = features / channels;
    // burn's Linear holds `[in, out]`.
    let mut folded = vec![0.0f32; features * outputs];
    let mut folded_bias = Vec::with_capacity(outputs);
    for o in 0..outputs {
        let row = &weight[o * features..][..features];
        let mut sum = f64::from(bias[o]);
        for (j, &w) in row.iter().enumerate() {
            let c = j / per_channel;
            folded[j * outputs + o] = (f64::from(w) * before.scale[c] * after.scale[o]) as f32;
            sum += f64::from(w) * before.shift[c];
        }
        folded_bias.push((sum * after.scale[o] + after.shift[o]) as f32);
    }
    Ok(folding::linear(
        folded,
        [features, outputs],
        folded_bias,
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::ComputeDevice;

    #[test]
    fn the_graph_becomes_a_stem_thirteen_pairs_and_one_linear_layer() {
        let file = WeightFile {
            path: "weights/sface.onnx".into(),
            bytes: ModelKind::Recognition.embedded_weights().to_vec(),
        };
        let model = FaceRecognizer::load(&file, &ComputeDevice::cpu().device).unwrap();
        assert_eq!(model.layers.len(), 1 + 13 * 2);
        assert_eq!(model.embedding.weight.dims(), [1024 * 7 * 7, TEMPLATE_LEN]);
        assert_eq!((model.input_offset, model.input_scale), (127.5, 0.0078125));
    }

    #[test]
    fn a_file_that_is_not_the_recognition_model_is_refused_naming_it() {
        for bytes in [
            ModelKind::Detector.embedded_weights().to_vec(),
            ModelKind::Recognition.embedded_weights()[..50_000].to_vec(),
        ] {
            let file = WeightFile {
                path: "elsewhere/model.onnx".into(),
                bytes,
            };
            let message = FaceRecognizer::load(&file, &ComputeDevice::cpu().device)
                .unwrap_err()
                .to_string();
            assert!(message.contains("elsewhere/model.onnx"), "{message}");
            assert!(message.contains("recognition"), "{message}");
        }
    }
}
