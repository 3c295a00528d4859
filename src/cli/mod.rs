//! The commands of the `face-service` binary, one module each; `main.rs` parses the arguments
//! and calls one of them. What every command shares lives here: which models run on which
//! device, and logging.

pub mod analyze;
pub mod bench;
pub mod clients;
pub mod deploy;
pub mod infer;
pub mod models;
pub mod recognize;
pub mod serve;

use std::path::PathBuf;

use crate::device::{ComputeDevice, DeviceRequest};
use crate::models::{FaceModels, ModelOptions, WeightSource};

pub type AnyError = Box<dyn std::error::Error>;

/// Which models to load, and on what.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// What the models run on: `auto` takes a hardware GPU if there is one, else the CPU.
    #[arg(
        long,
        env = "FACE_SERVICE_DEVICE",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub device: DeviceRequest,

    /// Read the weight files (`.tflite`, the recognition model's `.onnx`, the anti-spoofing
    /// `.safetensors`; the names in `models/*.toml`) from this directory instead of the copies
    /// compiled in.
    #[arg(long, env = "FACE_SERVICE_WEIGHTS_DIR", global = true)]
    pub weights_dir: Option<PathBuf>,

    /// Load weight files whose sha256 differs from the published ones (e.g. a retrained model
    /// of the same architecture).
    #[arg(long, env = "FACE_SERVICE_SKIP_WEIGHT_CHECKSUM", global = true)]
    pub skip_weight_checksum: bool,

    /// Run MediaPipe's attention model (478 points: the mesh with refined lips and eyes, and
    /// the irises), as the seed's `refine_landmarks=True`, instead of the 468-point model.
    #[arg(
        long,
        alias = "refine",
        env = "FACE_SERVICE_REFINE_LANDMARKS",
        global = true
    )]
    pub refine_landmarks: bool,
}

impl ModelArgs {
    pub fn options(&self) -> ModelOptions {
        ModelOptions {
            weights: self
                .weights_dir
                .clone()
                .map_or(WeightSource::Embedded, WeightSource::Directory),
            verify_checksum: !self.skip_weight_checksum,
            refine_landmarks: self.refine_landmarks,
        }
    }

    /// Picks the device and loads the models on it.
    pub fn load(&self) -> Result<FaceModels, AnyError> {
        let device = ComputeDevice::select(self.device)?;
        Ok(FaceModels::load(device, &self.options())?)
    }
}

/// Where the logs go, and how much of them.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter, in `tracing` syntax (`info`, `face_service=debug`, ...).
    #[arg(long, env = "FACE_SERVICE_LOG", default_value = "info", global = true)]
    pub log_level: String,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "FACE_SERVICE_LOG_JSON", global = true)]
    pub log_json: bool,
}

impl LogArgs {
    /// Logs to stderr, so that the commands' own output on stdout stays parseable.
    pub fn init(&self) {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&self.log_level))
            .with_writer(std::io::stderr);
        if self.log_json {
            builder.json().init();
        } else {
            builder.init();
        }
    }
}
