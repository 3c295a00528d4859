//! A reader for the parts of a TFLite model file that face-service needs: the named tensors of
//! the first subgraph, their shapes and element types, the bytes of their constant buffers, and
//! the options of its custom operators.
//!
//! A `.tflite` file is a FlatBuffer (schema: tensorflow/lite/schema/schema.fbs). We read it
//! directly instead of pulling in generated code for the whole schema: only six tables are
//! touched (Model, SubGraph, Tensor, Buffer, Operator, OperatorCode), and every offset is
//! bounds-checked so that a damaged file produces an error, never a panic or an out-of-bounds
//! read.

pub mod flexbuffers;

use std::collections::HashMap;

use thiserror::Error;

/// What can go wrong while reading a TFLite file.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TfliteError {
    #[error("not a TFLite model: {0}")]
    Malformed(String),
    #[error("tensor `{0}` is not in the model")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("tensor `{name}` is {actual:?}, expected a float16 or float32 constant")]
    NotFloat { name: String, actual: ElementType },
    #[error("tensor `{name}` should hold {expected} bytes of constant data but holds {actual}")]
    WrongDataSize {
        name: String,
        expected: usize,
        actual: usize,
    },
}

/// TFLite's `TensorType`, for the element types these models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Float32,
    Float16,
    Int32,
    /// Any other TFLite type, by its schema number.
    Other(u8),
}

impl ElementType {
    fn from_schema(value: u8) -> Self {
        match value {
            0 => Self::Float32,
            1 => Self::Float16,
            2 => Self::Int32,
            other => Self::Other(other),
        }
    }
}

/// One tensor of the model: its shape, type and (for constants) its raw little-endian bytes.
#[derive(Debug, Clone)]
pub struct TensorInfo<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub element_type: ElementType,
    pub data: &'a [u8],
}

impl TensorInfo<'_> {
    /// The constant's values as f32, widening float16 (how MediaPipe stores these weights) the
    /// same way TFLite's DEQUANTIZE op does: exactly, since every f16 is representable in f32.
    pub fn to_f32(&self) -> Result<Vec<f32>, TfliteError> {
        let count: usize = self.shape.iter().product();
        let (width, widen): (usize, fn(&[u8]) -> f32) = match self.element_type {
            ElementType::Float32 => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ElementType::Float16 => (2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            other => {
                return Err(TfliteError::NotFloat {
                    name: self.name.clone(),
                    actual: other,
                });
            }
        };
        if self.data.len() != count * width {
            return Err(TfliteError::WrongDataSize {
                name: self.name.clone(),
                expected: count * width,
                actual: self.data.len(),
            });
        }
        Ok(self.data.chunks_exact(width).map(widen).collect())
    }
}

/// One custom operator of the graph (MediaPipe's attention model has three kinds): its name,
/// the tensor it writes, and its options, a FlexBuffers map (read with `flexbuffers`).
#[derive(Debug, Clone)]
pub struct CustomOp<'a> {
    pub code: String,
    pub output: String,
    pub options: &'a [u8],
}

/// The tensors of a TFLite model's first (and, for MediaPipe's models, only) subgraph, by name,
/// and its custom operators in graph order.
#[derive(Debug)]
pub struct TfliteModel<'a> {
    tensors: HashMap<String, TensorInfo<'a>>,
    custom_ops: Vec<CustomOp<'a>>,
}

impl<'a> TfliteModel<'a> {
    /// Parses the file's tensor table. The bytes must outlive the model: constants are borrowed.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TfliteError> {
        let file = FlatBuffer { bytes };
        let model = file.root()?;
        let buffers = model.vector_of_tables(4)?.unwrap_or_default();
        let subgraph = model
            .vector_of_tables(2)?
            .and_then(|subgraphs| subgraphs.into_iter().next())
            .ok_or_else(|| TfliteError::Malformed("the model has no subgraph".into()))?;
        let mut tensors = HashMap::new();
        let mut names = Vec::new();
        for tensor in subgraph.vector_of_tables(0)?.unwrap_or_default() {
            let name = tensor.string(3)?.unwrap_or_default();
            let shape = tensor
                .vector_of_i32(0)?
                .unwrap_or_default()
                .into_iter()
                .map(|d| usize::try_from(d).map_err(|_| malformed(&name, "a negative dimension")))
                .collect::<Result<Vec<_>, _>>()?;
            let element_type = ElementType::from_schema(tensor.scalar_u8(1)?.unwrap_or(0));
            let buffer_index = tensor.scalar_u32(2)?.unwrap_or(0) as usize;
            // Buffer 0 is the schema's "no data" sentinel; activations point at it.
            let data = match buffers.get(buffer_index) {
                Some(buffer) if buffer_index > 0 => buffer
                    .vector_of_u8(0)
                    .map_err(|e| malformed(&name, &e.to_string()))?
                    .unwrap_or_default(),
                _ => &[],
            };
            names.push(name.clone());
            tensors.insert(
                name.clone(),
                TensorInfo {
                    name,
                    shape,
                    element_type,
                    data,
                },
            );
        }
        let custom_ops = read_custom_ops(&model, &subgraph, &names)?;
        Ok(Self {
            tensors,
            custom_ops,
        })
    }

    /// The custom operators called `code`, in graph order.
    pub fn custom_ops(&self, code: &str) -> impl Iterator<Item = &CustomOp<'a>> {
        self.custom_ops.iter().filter(move |op| op.code == code)
    }

    /// The custom operator that writes the tensor `output`.
    pub fn custom_op_writing(&self, output: &str) -> Result<&CustomOp<'a>, TfliteError> {
        self.custom_ops
            .iter()
            .find(|op| op.output == output)
            .ok_or_else(|| TfliteError::MissingTensor(output.to_owned()))
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo<'a>, TfliteError> {
        self.tensors
            .get(name)
            .ok_or_else(|| TfliteError::MissingTensor(name.to_owned()))
    }

    /// The constant called `name` as f32 values, after checking it has the `expected` shape.
    pub fn constant_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, TfliteError> {
        let tensor = self.tensor(name)?;
        if tensor.shape != expected {
            return Err(TfliteError::WrongShape {
                name: name.to_owned(),
                expected: expected.to_vec(),
                actual: tensor.shape.clone(),
            });
        }
        tensor.to_f32()
    }

    /// How many float values the file stores as constants: the model's parameter count, to
    /// check that a burn module built from the file used every weight in it.
    pub fn float_constant_count(&self) -> usize {
        self.tensors
            .values()
            .filter(|t| matches!(t.element_type, ElementType::Float16 | ElementType::Float32))
            .filter(|t| !t.data.is_empty())
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

/// The operators whose code is a custom one (OperatorCode.custom_code set), with the name of
/// their first output and their options.
fn read_custom_ops<'a>(
    model: &Table<'a>,
    subgraph: &Table<'a>,
    tensor_names: &[String],
) -> Result<Vec<CustomOp<'a>>, TfliteError> {
    let codes = model
        .vector_of_tables(1)?
        .unwrap_or_default()
        .iter()
        .map(|code| code.string(1))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ops = Vec::new();
    for operator in subgraph.vector_of_tables(3)?.unwrap_or_default() {
        let code_index = operator.scalar_u32(0)?.unwrap_or(0) as usize;
        let Some(Some(code)) = codes.get(code_index) else {
            continue;
        };
        let output = operator
            .vector_of_i32(2)?
            .unwrap_or_default()
            .first()
            .and_then(|&i| tensor_names.get(usize::try_from(i).ok()?))
            .cloned()
            .ok_or_else(|| {
                TfliteError::Malformed(format!("custom operator {code} has no output tensor"))
            })?;
        ops.push(CustomOp {
            code: code.clone(),
            output,
            options: operator.vector_of_u8(5)?.unwrap_or_default(),
        });
    }
    Ok(ops)
}

/// An error about the tensor called `tensor`, so that a damaged file says where it is damaged.
fn malformed(tensor: &str, what: &str) -> TfliteError {
    TfliteError::Malformed(format!("tensor `{tensor}`: {what}"))
}

/// Bounds-checked access to a FlatBuffer's bytes.
#[derive(Clone, Copy)]
struct FlatBuffer<'a> {
    bytes: &'a [u8],
}

impl<'a> FlatBuffer<'a> {
    fn read<const N: usize>(&self, at: usize) -> Result<[u8; N], TfliteError> {
        self.bytes
            .get(at..at.saturating_add(N))
            .map(|s| s.try_into().expect("slice has N bytes"))
            .ok_or_else(|| {
                TfliteError::Malformed(format!(
                    "offset {at} is past the end of the file ({} bytes): truncated or damaged",
                    self.bytes.len()
                ))
            })
    }
    fn u16(&self, at: usize) -> Result<u16, TfliteError> {
        self.read(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: usize) -> Result<u32, TfliteError> {
        self.read(at).map(u32::from_le_bytes)
    }
    fn i32(&self, at: usize) -> Result<i32, TfliteError> {
        self.read(at).map(i32::from_le_bytes)
    }

    /// Follows the unsigned offset stored at `at`, which FlatBuffers makes relative to itself.
    fn follow(&self, at: usize) -> Result<usize, TfliteError> {
        at.checked_add(self.u32(at)? as usize)
            .ok_or_else(|| TfliteError::Malformed("offset overflow".into()))
    }

    fn root(self) -> Result<Table<'a>, TfliteError> {
        // Bytes 4..8 hold the file identifier "TFL3".
        if self.bytes.get(4..8) != Some(b"TFL3".as_slice()) {
            return Err(TfliteError::Malformed(
                "missing the TFL3 file identifier".into(),
            ));
        }
        Table::at(self, self.follow(0)?)
    }
}

/// A FlatBuffer table: its position, and its vtable that says where each field lives.
struct Table<'a> {
    buf: FlatBuffer<'a>,
    position: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    fn at(buf: FlatBuffer<'a>, position: usize) -> Result<Self, TfliteError> {
        let vtable = (position as i64) - i64::from(buf.i32(position)?);
        let vtable = usize::try_from(vtable)
            .map_err(|_| TfliteError::Malformed("vtable before the start of the file".into()))?;
        let vtable_len = buf.u16(vtable)? as usize;
        Ok(Self {
            buf,
            position,
            vtable,
            vtable_len,
        })
    }

    /// Where field number `field` is stored, or None when the writer left it at its default.
    fn field(&self, field: usize) -> Result<Option<usize>, TfliteError> {
        let slot = 4 + 2 * field;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        match self.buf.u16(self.vtable + slot)? {
            0 => Ok(None),
            offset => Ok(Some(self.position + offset as usize)),
        }
    }

    fn scalar_u8(&self, field: usize) -> Result<Option<u8>, TfliteError> {
        self.field(field)?
            .map(|at| self.buf.read::<1>(at).map(|b| b[0]))
            .transpose()
    }

    fn scalar_u32(&self, field: usize) -> Result<Option<u32>, TfliteError> {
        self.field(field)?.map(|at| self.buf.u32(at)).transpose()
    }

    /// A vector field: the position of its first element and its length.
    fn vector(&self, field: usize) -> Result<Option<(usize, usize)>, TfliteError> {
        let Some(at) = self.field(field)? else {
            return Ok(None);
        };
        let start = self.buf.follow(at)?;
        let len = self.buf.u32(start)? as usize;
        Ok(Some((start + 4, len)))
    }

    fn vector_of_u8(&self, field: usize) -> Result<Option<&'a [u8]>, TfliteError> {
        let Some((start, len)) = self.vector(field)? else {
            return Ok(None);
        };
        self.buf
            .bytes
            .get(start..start.saturating_add(len))
            .map(Some)
            .ok_or_else(|| TfliteError::Malformed("a byte vector runs past the end".into()))
    }

    fn vector_of_i32(&self, field: usize) -> Result<Option<Vec<i32>>, TfliteError> {
        let Some((start, len)) = self.vector(field)? else {
            return Ok(None);
        };
        (0..len)
            .map(|i| self.buf.i32(start + 4 * i))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn vector_of_tables(&self, field: usize) -> Result<Option<Vec<Table<'a>>>, TfliteError> {
        let Some((start, len)) = self.vector(field)? else {
            return Ok(None);
        };
        // Each element is an offset to a table; a huge bogus length fails on the first read
        // past the end instead of allocating.
        let mut tables = Vec::new();
        for i in 0..len {
            tables.push(Table::at(self.buf, self.buf.follow(start + 4 * i)?)?);
        }
        Ok(Some(tables))
    }

    fn string(&self, field: usize) -> Result<Option<String>, TfliteError> {
        Ok(self
            .vector_of_u8(field)?
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const LANDMARKS: &[u8] = include_bytes!("../../weights/face_landmark.tflite");

    #[test]
    fn reads_the_landmark_models_tensors() {
        let model = TfliteModel::parse(LANDMARKS).unwrap();
        let input = model.tensor("input_1").unwrap();
        assert_eq!(input.shape, [1, 192, 192, 3]);
        assert_eq!(input.element_type, ElementType::Float32);
        let kernel = model.tensor("conv2d_1/Kernel").unwrap();
        assert_eq!(kernel.shape, [16, 3, 3, 3]);
        assert_eq!(kernel.element_type, ElementType::Float16);
        let values = model
            .constant_f32("conv2d_1/Kernel", &[16, 3, 3, 3])
            .unwrap();
        assert_eq!(values.len(), 16 * 27);
        assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn names_the_tensor_when_a_shape_is_wrong() {
        let model = TfliteModel::parse(LANDMARKS).unwrap();
        let err = model
            .constant_f32("conv2d_1/Kernel", &[16, 3, 3, 4])
            .unwrap_err();
        assert!(err.to_string().contains("conv2d_1/Kernel"), "{err}");
        let err = model.constant_f32("no_such_tensor", &[1]).unwrap_err();
        assert_eq!(err, TfliteError::MissingTensor("no_such_tensor".into()));
    }

    /// A copy of `file` whose constant `tensor` claims more bytes than the file holds.
    pub(crate) fn with_damaged_tensor(file: &[u8], tensor: &str) -> Vec<u8> {
        let model = TfliteModel::parse(file).unwrap();
        let data = model.tensor(tensor).unwrap().data;
        // The vector's length is stored in the 4 bytes before its first element.
        let length_at = data.as_ptr() as usize - file.as_ptr() as usize - 4;
        let mut damaged = file.to_vec();
        damaged[length_at..length_at + 4].copy_from_slice(&(u32::MAX / 2).to_le_bytes());
        damaged
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        assert!(TfliteModel::parse(b"").is_err());
        assert!(TfliteModel::parse(b"not a model at all").is_err());
        // Every truncation of the real file either parses (if the cut falls in trailing
        // metadata) or fails cleanly.
        for cut in (0..LANDMARKS.len()).step_by(LANDMARKS.len() / 97) {
            let _ = TfliteModel::parse(&LANDMARKS[..cut]);
        }
        // Damage inside one tensor's data names that tensor.
        let damaged = with_damaged_tensor(LANDMARKS, "conv2d_1/Kernel");
        let err = TfliteModel::parse(&damaged).unwrap_err();
        assert!(
            err.to_string().contains("tensor `conv2d_1/Kernel`"),
            "{err}"
        );
        // A corrupted vtable offset must not send the reader out of bounds.
        let mut bytes = LANDMARKS.to_vec();
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(TfliteModel::parse(&bytes).is_err());
    }

    #[test]
    fn damaged_weight_files_are_errors_never_panics() {
        // The header and the first tensors' tables, where the reader follows offsets.
        let head = &LANDMARKS[..LANDMARKS.len().min(64 << 10)];
        crate::mutations::never_panics(head, crate::mutations::cases(400), |bytes| {
            let _ = TfliteModel::parse(bytes);
        });
    }
}
