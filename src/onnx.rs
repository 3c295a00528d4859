//! Reading ONNX model files through burn's own ONNX parser, `onnx-ir`, which gives a typed
//! graph: one node per operator with its attributes parsed, shapes inferred and constants
//! folded (the weights' `Reshape`s, the `Dropout` of inference).
//!
//! `onnx-ir` 0.22 refuses block-wise `DequantizeLinear` (the int8 weights of OpenCV Zoo's
//! quantised models), and such files also list their float weights, which they no longer hold,
//! as graph inputs. So the file is rewritten first, through `onnx-ir`'s own protobuf types:
//! every `DequantizeLinear` of constants becomes the float constant it computes, in f32 as
//! ONNX Runtime computes it, and graph inputs that are constants or unread are dropped.

use std::collections::HashSet;

use onnx_ir::{AttributeProto, Message, ModelProto, NodeProto, OnnxGraph, OnnxGraphBuilder};
use onnx_ir::{GraphProto, TensorProto};
use thiserror::Error;

pub use onnx_ir::{ArgType, Argument, Node};

#[derive(Debug, Error, Clone, PartialEq)]
pub enum OnnxError {
    #[error("not an ONNX model: {0}")]
    Malformed(String),
    #[error("cannot dequantise `{tensor}`: {reason}")]
    Quantisation { tensor: String, reason: String },
    #[error("the ONNX graph does not parse: {0}")]
    Graph(String),
}

/// ONNX's element type numbers for the types read here.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;

/// Parses `bytes` into `onnx-ir`'s typed graph, with quantised constants dequantised first.
pub fn parse(bytes: &[u8]) -> Result<OnnxGraph, OnnxError> {
    let mut model =
        ModelProto::parse_from_bytes(bytes).map_err(|e| OnnxError::Malformed(e.to_string()))?;
    let graph = model.graph.mut_or_insert_default();
    dequantize_constants(graph)?;
    drop_constant_and_unread_inputs(graph);
    let rewritten = model
        .write_to_bytes()
        .map_err(|e| OnnxError::Malformed(e.to_string()))?;
    OnnxGraphBuilder::new()
        .parse_bytes(&rewritten)
        .map_err(|e| OnnxError::Graph(e.to_string()))
}

/// Replaces each `DequantizeLinear` whose inputs are all initializers by an f32 initializer
/// holding its output, and drops the quantised initializers nothing else reads.
fn dequantize_constants(graph: &mut GraphProto) -> Result<(), OnnxError> {
    let mut folded = Vec::new();
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let constant = |name: &String| graph.initializer.iter().find(|t| &t.name == name);
        let inputs: Option<Vec<&TensorProto>> = node.input.iter().map(constant).collect();
        match inputs {
            Some(inputs) if node.op_type == "DequantizeLinear" => {
                folded.push(dequantize(&node, &inputs)?);
            }
            _ => kept.push(node),
        }
    }
    graph.node = kept;
    let read: HashSet<&String> = graph.node.iter().flat_map(|n| &n.input).collect();
    let read: HashSet<String> = read.into_iter().cloned().collect();
    graph.initializer.retain(|t| read.contains(&t.name));
    graph
        .initializer
        .extend(folded.into_iter().filter(|t| read.contains(&t.name)));
    Ok(())
}

/// Graph inputs that are constants or that no node reads: old exporters list every weight as
/// an input, and a quantised file keeps the names of the float weights it replaced.
fn drop_constant_and_unread_inputs(graph: &mut GraphProto) {
    let read: HashSet<&String> = graph.node.iter().flat_map(|n| &n.input).collect();
    let constant: HashSet<&String> = graph.initializer.iter().map(|t| &t.name).collect();
    let keep: HashSet<String> = read
        .difference(&constant)
        .map(|name| (*name).clone())
        .collect();
    graph.input.retain(|input| keep.contains(&input.name));
}

/// `DequantizeLinear`: `y = (x - zero_point) * scale`, the scale and zero point per block of
/// `block_size` values along `axis` (per axis when there are no blocks, one for the whole
/// tensor when the scale is a scalar).
fn dequantize(node: &NodeProto, inputs: &[&TensorProto]) -> Result<TensorProto, OnnxError> {
    let name = node.output.first().cloned().unwrap_or_default();
    let fail = |reason: String| OnnxError::Quantisation {
        tensor: name.clone(),
        reason,
    };
    let (values, scales) = match inputs {
        [values, scales] | [values, scales, _] => (*values, *scales),
        _ => return Err(fail(format!("{} inputs", inputs.len()))),
    };
    let quantised = integers(values).map_err(&fail)?;
    let scale = floats(scales).map_err(&fail)?;
    let zero_point = match inputs.get(2) {
        Some(zero) => integers(zero).map_err(&fail)?,
        None => vec![0; scale.len()],
    };
    let dims: Vec<usize> = values.dims.iter().map(|&d| d as usize).collect();
    let rank = dims.len() as i64;
    let axis = attribute(node, "axis").unwrap_or(1);
    let axis = usize::try_from(if axis < 0 { axis + rank } else { axis })
        .ok()
        .filter(|&a| a < dims.len().max(1))
        .ok_or_else(|| fail(format!("axis {axis} of a rank-{rank} tensor")))?;
    let along = dims.get(axis).copied().unwrap_or(1);
    let inner: usize = dims.iter().skip(axis + 1).product();
    let block = match attribute(node, "block_size").unwrap_or(0) {
        0 if scale.len() == 1 => along.max(1),
        0 => 1,
        size => usize::try_from(size).map_err(|_| fail(format!("block size {size}")))?,
    };
    let blocks = along.div_ceil(block);
    let outer = quantised.len() / (along * inner).max(1);
    if scale.len() != outer * blocks * inner || zero_point.len() != scale.len() {
        return Err(fail(format!(
            "{} scales and {} zero points for shape {dims:?}, block {block} on axis {axis}",
            scale.len(),
            zero_point.len()
        )));
    }
    let dequantised = quantised
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let (o, a, r) = (i / (along * inner), (i / inner) % along, i % inner);
            let k = (o * blocks + a / block) * inner + r;
            (q - zero_point[k]) as f32 * scale[k]
        })
        .collect();
    let mut tensor = TensorProto::new();
    tensor.name = name;
    tensor.dims = values.dims.clone();
    tensor.data_type = FLOAT;
    tensor.float_data = dequantised;
    Ok(tensor)
}

fn attribute(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a: &&AttributeProto| a.name == name)
        .map(|a| a.i)
}

/// An int8 or uint8 initializer's values, from its raw bytes or its `int32_data`.
fn integers(tensor: &TensorProto) -> Result<Vec<i32>, String> {
    let widen: fn(u8) -> i32 = match tensor.data_type {
        INT8 => |b| i32::from(b as i8),
        UINT8 => i32::from,
        other => return Err(format!("`{}` has element type {other}", tensor.name)),
    };
    if tensor.raw_data.is_empty() {
        Ok(tensor.int32_data.clone())
    } else {
        Ok(tensor.raw_data.iter().copied().map(widen).collect())
    }
}

/// A float32 initializer's values, from its raw bytes or its `float_data`.
fn floats(tensor: &TensorProto) -> Result<Vec<f32>, String> {
    if tensor.data_type != FLOAT {
        return Err(format!(
            "`{}` has element type {}, not float",
            tensor.name, tensor.data_type
        ));
    }
    if tensor.raw_data.is_empty() {
        return Ok(tensor.float_data.clone());
    }
    if !tensor.raw_data.len().is_multiple_of(4) {
        return Err(format!("`{}` holds a partial float", tensor.name));
    }
    Ok(tensor
        .raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initializer(name: &str, data_type: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
        let mut tensor = TensorProto::new();
        tensor.name = name.into();
        tensor.data_type = data_type;
        tensor.dims = dims.to_vec();
        tensor.raw_data = raw.into();
        tensor
    }

    fn dequantize_node(block_size: i64, axis: i64) -> NodeProto {
        let mut node = NodeProto::new();
        node.op_type = "DequantizeLinear".into();
        node.input = vec!["q".into(), "s".into(), "z".into()];
        node.output = vec!["w".into()];
        for (name, value) in [("block_size", block_size), ("axis", axis)] {
            let mut a = AttributeProto::new();
            a.name = name.into();
            a.i = value;
            node.attribute.push(a);
        }
        node
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Two rows of four int8 values in blocks of two along axis 1: each pair has its own scale
    /// and zero point, as ONNX's blocked quantisation defines them.
    #[test]
    fn blocks_take_their_own_scale_and_zero_point() {
        let q = initializer(
            "q",
            INT8,
            &[2, 4],
            [1i8, 2, 3, 4, -1, -2, -3, -4].map(|v| v as u8).to_vec(),
        );
        let s = initializer("s", FLOAT, &[2, 2], f32_bytes(&[0.5, 2.0, 1.0, 0.25]));
        let z = initializer(
            "z",
            INT8,
            &[2, 2],
            [1i8, 0, -1, 4].map(|v| v as u8).to_vec(),
        );
        let out = dequantize(&dequantize_node(2, 1), &[&q, &s, &z]).unwrap();
        assert_eq!(out.dims, [2, 4]);
        assert_eq!(out.float_data, [0.0, 0.5, 6.0, 8.0, 0.0, -1.0, -1.75, -2.0]);
    }

    #[test]
    fn scales_that_do_not_cover_the_blocks_are_an_error_naming_the_tensor() {
        let q = initializer("q", INT8, &[2, 4], vec![0; 8]);
        let s = initializer("s", FLOAT, &[2, 1], f32_bytes(&[1.0, 1.0]));
        let z = initializer("z", INT8, &[2, 1], vec![0; 2]);
        let message = dequantize(&dequantize_node(2, 1), &[&q, &s, &z])
            .unwrap_err()
            .to_string();
        assert!(message.contains("`w`"), "{message}");
        assert!(message.contains("block 2"), "{message}");
    }

    #[test]
    fn a_file_that_is_not_onnx_is_an_error() {
        assert!(matches!(
            parse(b"\xff\xff\xff not a protobuf"),
            Err(OnnxError::Malformed(_))
        ));
    }
}
