//! A reader for the FlexBuffers maps in which TFLite stores a custom operator's options
//! (format: google.github.io/flatbuffers/flexbuffers). MediaPipe's custom operators keep
//! integers, floats and vectors of integers there, so that is all this reads; any other value
//! is an error naming its key, as is every offset that leaves the buffer.

use std::collections::HashMap;

use crate::tflite::TfliteError;

/// One option value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
}

/// A custom operator's options, by key.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    values: HashMap<String, OptionValue>,
}

impl Options {
    /// Reads the root map of a FlexBuffer.
    pub fn parse(bytes: &[u8]) -> Result<Self, TfliteError> {
        let reader = Reader { bytes };
        let len = bytes.len();
        if len < 3 {
            return Err(damaged("the buffer is too short for a root value"));
        }
        let root_width = usize::from(bytes[len - 1]);
        let root_packed = bytes[len - 2];
        let root_at = (len - 2)
            .checked_sub(root_width)
            .ok_or_else(|| damaged("the root value starts before the buffer"))?;
        if root_packed >> 2 != MAP {
            return Err(damaged("the root value is not a map"));
        }
        let map = reader.follow(root_at, root_width)?;
        let width = 1usize << (root_packed & 3);
        let size = reader.uint(before(map, width)?, width)? as usize;
        let keys_at = before(map, 3 * width)?;
        let keys = reader.follow(keys_at, width)?;
        let key_width = reader.uint(before(map, 2 * width)?, width)? as usize;
        let types_at = map
            .checked_add(
                size.checked_mul(width)
                    .ok_or_else(|| damaged("map too large"))?,
            )
            .ok_or_else(|| damaged("map too large"))?;
        let mut values = HashMap::new();
        for i in 0..size {
            let key = reader.key(reader.follow(keys + i * key_width, key_width)?)?;
            let packed = reader.byte(types_at + i)?;
            let value = reader
                .value(map + i * width, width, packed)
                .map_err(|e| damaged(&format!("option `{key}`: {e}")))?;
            values.insert(key, value);
        }
        Ok(Self { values })
    }

    pub fn int(&self, key: &str) -> Result<i64, TfliteError> {
        match self.get(key)? {
            OptionValue::Int(value) => Ok(*value),
            other => Err(wrong_kind(key, "an integer", other)),
        }
    }

    /// A float option; an integer is accepted, as FlexBuffers writers store 1.0 either way.
    pub fn float(&self, key: &str) -> Result<f64, TfliteError> {
        match self.get(key)? {
            OptionValue::Float(value) => Ok(*value),
            OptionValue::Int(value) => Ok(*value as f64),
            other => Err(wrong_kind(key, "a number", other)),
        }
    }

    pub fn ints(&self, key: &str) -> Result<&[i64], TfliteError> {
        match self.get(key)? {
            OptionValue::Ints(values) => Ok(values),
            other => Err(wrong_kind(key, "a vector of integers", other)),
        }
    }

    fn get(&self, key: &str) -> Result<&OptionValue, TfliteError> {
        self.values
            .get(key)
            .ok_or_else(|| damaged(&format!("option `{key}` is missing")))
    }
}

// FlexBuffers type numbers (the high six bits of a packed type byte).
const INT: u8 = 1;
const UINT: u8 = 2;
const FLOAT: u8 = 3;
const INDIRECT_INT: u8 = 6;
const INDIRECT_UINT: u8 = 7;
const INDIRECT_FLOAT: u8 = 8;
const MAP: u8 = 9;
const VECTOR_INT: u8 = 11;
const VECTOR_UINT: u8 = 12;
const BOOL: u8 = 26;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn slice(&self, at: usize, width: usize) -> Result<&[u8], TfliteError> {
        if !matches!(width, 1 | 2 | 4 | 8) {
            return Err(damaged(&format!("value width {width} is not 1, 2, 4 or 8")));
        }
        self.bytes
            .get(at..at.saturating_add(width))
            .ok_or_else(|| damaged(&format!("offset {at} is past the end of the buffer")))
    }

    fn byte(&self, at: usize) -> Result<u8, TfliteError> {
        self.slice(at, 1).map(|b| b[0])
    }

    fn uint(&self, at: usize, width: usize) -> Result<u64, TfliteError> {
        let bytes = self.slice(at, width)?;
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(le))
    }

    fn int(&self, at: usize, width: usize) -> Result<i64, TfliteError> {
        let raw = self.uint(at, width)?;
        let unused = 64 - 8 * width as u32;
        // Sign-extend from `width` bytes.
        Ok(((raw << unused) as i64) >> unused)
    }

    fn float(&self, at: usize, width: usize) -> Result<f64, TfliteError> {
        let raw = self.uint(at, width)?;
        match width {
            4 => Ok(f64::from(f32::from_bits(raw as u32))),
            8 => Ok(f64::from_bits(raw)),
            _ => Err(damaged(&format!("a float of {width} bytes"))),
        }
    }

    /// Offsets point backwards: the target is the offset's own position minus its value.
    fn follow(&self, at: usize, width: usize) -> Result<usize, TfliteError> {
        let offset = self.uint(at, width)?;
        usize::try_from(offset)
            .ok()
            .and_then(|offset| at.checked_sub(offset))
            .ok_or_else(|| damaged("an offset points before the buffer"))
    }

    fn key(&self, at: usize) -> Result<String, TfliteError> {
        let rest = self.bytes.get(at..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| damaged("a key has no terminating zero"))?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    /// The value stored at `at` in a parent of `width`-byte slots, with packed type `packed`.
    fn value(&self, at: usize, width: usize, packed: u8) -> Result<OptionValue, TfliteError> {
        let own_width = 1usize << (packed & 3);
        match packed >> 2 {
            INT => self.int(at, width).map(OptionValue::Int),
            UINT | BOOL => self.unsigned(at, width),
            FLOAT => self.float(at, width).map(OptionValue::Float),
            INDIRECT_INT => self
                .int(self.follow(at, width)?, own_width)
                .map(OptionValue::Int),
            INDIRECT_UINT => self.unsigned(self.follow(at, width)?, own_width),
            INDIRECT_FLOAT => self
                .float(self.follow(at, width)?, own_width)
                .map(OptionValue::Float),
            kind @ (VECTOR_INT | VECTOR_UINT) => {
                let start = self.follow(at, width)?;
                let len = self.uint(before(start, own_width)?, own_width)? as usize;
                if len > self.bytes.len() {
                    return Err(damaged("a vector is longer than the buffer"));
                }
                (0..len)
                    .map(|i| {
                        let element = start + i * own_width;
                        if kind == VECTOR_INT {
                            self.int(element, own_width)
                        } else {
                            self.uint(element, own_width).map(|v| v as i64)
                        }
                    })
                    .collect::<Result<_, _>>()
                    .map(OptionValue::Ints)
            }
            other => Err(damaged(&format!("unsupported value type {other}"))),
        }
    }

    fn unsigned(&self, at: usize, width: usize) -> Result<OptionValue, TfliteError> {
        let value = self.uint(at, width)?;
        i64::try_from(value)
            .map(OptionValue::Int)
            .map_err(|_| damaged("an unsigned value too large for i64"))
    }
}

fn before(at: usize, distance: usize) -> Result<usize, TfliteError> {
    at.checked_sub(distance)
        .ok_or_else(|| damaged("a header lies before the buffer"))
}

fn damaged(what: &str) -> TfliteError {
    TfliteError::Malformed(format!("custom operator options: {what}"))
}

fn wrong_kind(key: &str, expected: &str, actual: &OptionValue) -> TfliteError {
    damaged(&format!(
        "option `{key}` should be {expected}, is {actual:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tflite::TfliteModel;

    const ATTENTION: &[u8] = include_bytes!("../../weights/face_landmark_with_attention.tflite");

    /// The values Python's `flatbuffers.flexbuffers.Loads` reads from the same operator of
    /// MediaPipe's file (the lips region).
    #[test]
    fn reads_the_lips_transform_options_as_the_reference_reader_does() {
        let model = TfliteModel::parse(ATTENTION).unwrap();
        let op = model
            .custom_op_writing("landmarks_to_transform_matrix_v2")
            .unwrap();
        assert_eq!(op.code, "Landmarks2TransformMatrix");
        let options = Options::parse(op.options).unwrap();
        assert_eq!(options.int("left_rotation_idx").unwrap(), 61);
        assert_eq!(options.int("right_rotation_idx").unwrap(), 291);
        assert_eq!(options.int("output_width").unwrap(), 16);
        assert_eq!(options.float("scale_x").unwrap(), 1.5);
        assert_eq!(options.float("target_rotation_radians").unwrap(), 0.0);
        let subset = options.ints("subset_idxs").unwrap();
        assert_eq!(subset.len(), 80);
        assert_eq!(&subset[..4], &[61, 146, 91, 181]);
        assert_eq!(subset[79], 407);
        assert!(options.int("no_such_option").is_err());
        assert!(options.ints("scale_x").is_err());
    }

    #[test]
    fn damaged_options_are_errors_not_panics() {
        let model = TfliteModel::parse(ATTENTION).unwrap();
        let good = model
            .custom_op_writing("landmarks_to_transform_matrix_v2_1")
            .unwrap()
            .options;
        assert!(Options::parse(&[]).is_err());
        for cut in 0..good.len() {
            let _ = Options::parse(&good[cut..]);
            let _ = Options::parse(&good[..cut]);
        }
        for at in 0..good.len() {
            let mut bytes = good.to_vec();
            bytes[at] = bytes[at].wrapping_add(0x55);
            let _ = Options::parse(&bytes);
        }
        crate::mutations::never_panics(good, crate::mutations::cases(5000), |bytes| {
            let _ = Options::parse(bytes);
        });
    }
}
