//! Reading the weight files, and loading MediaPipe's `.tflite` ones into burn parameters by
//! tensor name (the ONNX recognition model reads its graph itself: `recognizer.rs`).
//!
//! Each burn layer asks for its weights by the name the tensor has in the file (`conv2d_3`,
//! `p_re_lu_7`, ...), so the layer tables in the model code are the whole mapping; a file that
//! does not match the architecture fails with an error naming the file and the tensor.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{PRelu, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::models::description::ModelKind;
use crate::tflite::flexbuffers::Options;
use crate::tflite::{TfliteError, TfliteModel};

/// Where the weight files come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WeightSource {
    /// The files from `weights/`, compiled into the binary (the default: nothing to deploy).
    #[default]
    Embedded,
    /// A directory holding files with the names given in `models/*.toml`.
    Directory(PathBuf),
}

/// Why a model could not be built from its weight file.
#[derive(Debug, Error)]
pub enum WeightError {
    #[error("cannot read weight file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "weight file {path} has sha256 {actual}, but models/ expects {expected} \
         (the file as published); disable the checksum to load a different file anyway"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("weight file {path} does not match the {model} architecture: {source}")]
    Tensor {
        path: PathBuf,
        model: String,
        source: TfliteError,
    },
    #[error("weight file {path} does not match the {model} architecture: {reason}")]
    Graph {
        path: PathBuf,
        model: String,
        reason: String,
    },
}

/// The bytes of one model's weight file and the name to report it by.
pub struct WeightFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl WeightFile {
    /// Reads the weight file of `kind` from `source`, checking its sha256 against `models/`
    /// unless `verify_checksum` is off (for trying a retrained file of the same architecture).
    pub fn load(
        kind: ModelKind,
        source: &WeightSource,
        verify_checksum: bool,
    ) -> Result<Self, WeightError> {
        let description = kind.description();
        let (path, bytes) = match source {
            WeightSource::Embedded => (
                Path::new("weights").join(&description.weights),
                kind.embedded_weights().to_vec(),
            ),
            WeightSource::Directory(dir) => {
                let path = dir.join(&description.weights);
                let bytes = std::fs::read(&path).map_err(|source| WeightError::Read {
                    path: path.clone(),
                    source,
                })?;
                (path, bytes)
            }
        };
        if verify_checksum {
            let actual = hex(&Sha256::digest(&bytes));
            if actual != description.sha256 {
                return Err(WeightError::Checksum {
                    path,
                    expected: description.sha256,
                    actual,
                });
            }
        }
        Ok(Self { path, bytes })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds burn layers from the named tensors of one parsed weight file.
pub struct LayerLoader<'a> {
    path: &'a Path,
    model: &'a str,
    tflite: TfliteModel<'a>,
    device: &'a Device,
}

impl<'a> LayerLoader<'a> {
    pub fn new(
        file: &'a WeightFile,
        model: &'a str,
        device: &'a Device,
    ) -> Result<Self, WeightError> {
        let tflite = TfliteModel::parse(&file.bytes).map_err(|source| WeightError::Tensor {
            path: file.path.clone(),
            model: model.to_owned(),
            source,
        })?;
        Ok(Self {
            path: &file.path,
            model,
            tflite,
            device,
        })
    }

    /// The constant `tensor` as f32 values, checked to have `shape`.
    pub fn constant(&self, tensor: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        self.tflite
            .constant_f32(tensor, shape)
            .map_err(|source| self.in_file(source))
    }

    /// The options of the custom operator `code` that writes the tensor `output`.
    pub fn custom_options(&self, code: &str, output: &str) -> Result<Options, WeightError> {
        let op = self
            .tflite
            .custom_op_writing(output)
            .map_err(|source| self.in_file(source))?;
        if op.code != code {
            return Err(self.in_file(TfliteError::Malformed(format!(
                "tensor `{output}` is written by {}, expected {code}",
                op.code
            ))));
        }
        Options::parse(op.options).map_err(|source| self.in_file(source))
    }

    pub(crate) fn in_file(&self, source: TfliteError) -> WeightError {
        WeightError::Tensor {
            path: self.path.to_owned(),
            model: self.model.to_owned(),
            source,
        }
    }

    fn bias(&self, layer: &str, channels: usize) -> Result<Param<Tensor<1>>, WeightError> {
        let values = self.constant(&format!("{layer}/Bias"), &[channels])?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [channels]),
            self.device,
        )))
    }

    /// The device the layers are loaded onto.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// A full convolution `layer` with TensorFlow's padding rule. TFLite stores the kernel as
    /// `[out, kh, kw, in]`; burn wants `[out, in, kh, kw]`.
    pub fn conv(
        &self,
        layer: &str,
        [channels_in, channels_out]: [usize; 2],
        kernel: usize,
        stride: usize,
        padding: Padding,
    ) -> Result<Conv2d, WeightError> {
        let values = self.constant(
            &format!("{layer}/Kernel"),
            &[channels_out, kernel, kernel, channels_in],
        )?;
        let values = channels_last_to_first(&values, channels_out, kernel * kernel, channels_in);
        let weight = Tensor::<4>::from_data(
            TensorData::new(values, [channels_out, channels_in, kernel, kernel]),
            self.device,
        );
        Ok(conv2d(
            weight,
            self.bias(layer, channels_out)?,
            kernel,
            stride,
            1,
            padding,
        ))
    }

    /// A depthwise convolution `layer` (one filter per channel). TFLite stores the kernel as
    /// `[1, kh, kw, channels]`; burn's grouped convolution wants `[channels, 1, kh, kw]`.
    pub fn depthwise(
        &self,
        layer: &str,
        channels: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<Conv2d, WeightError> {
        let values = self.constant(&format!("{layer}/Kernel"), &[1, kernel, kernel, channels])?;
        let values = channels_last_to_first(&values, 1, kernel * kernel, channels);
        let weight = Tensor::<4>::from_data(
            TensorData::new(values, [channels, 1, kernel, kernel]),
            self.device,
        );
        Ok(conv2d(
            weight,
            self.bias(layer, channels)?,
            kernel,
            stride,
            channels,
            Padding::Same,
        ))
    }

    /// A PReLU `layer` with one slope per channel (stored as `[1, 1, channels]`).
    pub fn prelu(&self, layer: &str, channels: usize) -> Result<PRelu, WeightError> {
        let values = self.constant(&format!("{layer}/Alpha"), &[1, 1, channels])?;
        Ok(PRelu {
            alpha: Param::from_tensor(Tensor::from_data(
                TensorData::new(values, [channels]),
                self.device,
            )),
            alpha_value: 0.0,
        })
    }
}

/// Reorders `[outer, taps, channels]` into `[outer, channels, taps]` on the host, so that burn
/// gets contiguous kernels (a permuted view would be re-laid out on every forward pass).
fn channels_last_to_first(values: &[f32], outer: usize, taps: usize, channels: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for o in 0..outer {
        for t in 0..taps {
            for c in 0..channels {
                out[(o * channels + c) * taps + t] = values[(o * taps + t) * channels + c];
            }
        }
    }
    out
}

/// TensorFlow's two padding rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Output size = ceil(input / stride); when the total padding is odd, the extra row and
    /// column go at the bottom and right. burn's `PaddingConfig2d::Same` computes exactly this
    /// split (tested in `layers.rs`), which matters for every stride-2 layer of these models.
    Same,
    Valid,
}

fn conv2d(
    weight: Tensor<4>,
    bias: Param<Tensor<1>>,
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
) -> Conv2d {
    Conv2d {
        weight: Param::from_tensor(weight),
        bias: Some(bias),
        stride: [stride, stride],
        kernel_size: [kernel, kernel],
        dilation: [1, 1],
        groups,
        padding: match padding {
            Padding::Same => PaddingConfig2d::Same,
            Padding::Valid => PaddingConfig2d::Valid,
        },
    }
}
