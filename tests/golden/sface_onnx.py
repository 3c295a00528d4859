"""SFace's ONNX file as ONNX Runtime can run it, for the golden fixtures and the benchmark.

The file OpenCV Zoo ships (weights/face_recognition_sface_2021dec_int8bq.onnx) keeps its
weights as int8 with block-wise DequantizeLinear in front of each layer, and lists the float
weights it no longer holds as graph inputs; ONNX Runtime refuses it as it is. Here each
DequantizeLinear of constants becomes the float constant it computes, in float32 as ONNX
Runtime computes it, and graph inputs that are constants or unread are dropped: the same rewrite face-service makes
before parsing (src/onnx.rs). The batch dimension is made free so that batches can be run.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "face_recognition_sface_2021dec_int8bq.onnx"


def dequantize(q, scale, zero, axis, block):
    q = q.astype(np.int32)
    zero = zero.astype(np.int32)
    if block:
        scale = np.repeat(scale, block, axis=axis)[tuple(slice(0, d) for d in q.shape)]
        zero = np.repeat(zero, block, axis=axis)[tuple(slice(0, d) for d in q.shape)]
    return ((q - zero).astype(np.float32) * scale.astype(np.float32)).astype(np.float32)


def float_graph(path=WEIGHTS):
    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept, folded = [], []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in constants for i in node.input):
            attrs = {a.name: a.i for a in node.attribute}
            q, scale, zero = (constants[i] for i in node.input)
            values = dequantize(q, scale, zero, attrs.get("axis", 1), attrs.get("block_size", 0))
            folded.append(numpy_helper.from_array(values, node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    read = {i for node in graph.node for i in node.input}
    initializers = [t for t in graph.initializer if t.name in read] + folded
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    constant = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name in read and i.name not in constant]
    del graph.input[:]
    graph.input.extend(inputs)
    for value in list(graph.input) + list(graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def session(threads=1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        float_graph().SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def model_input(crops):
    """RGB crops (N, 112, 112, 3) uint8 to the model's input, as face-service maps bytes onto
    the input range [0, 255] in float32 (models::description::InputDescription::normalize)."""
    x = np.float32(255.0) * (np.asarray(crops).astype(np.float32) / np.float32(255.0))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
