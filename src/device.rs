//! The one place where face-service chooses what its models run on.
//!
//! `gpu` is burn's wgpu backend (Vulkan, Metal or DX12). On a machine without a GPU, wgpu may
//! still find a software adapter (Mesa's llvmpipe): `gpu` then runs there, reported as such,
//! because that is what CI tests the shader path on. `auto` only takes a hardware adapter and
//! otherwise falls back to `cpu`, burn's flex backend, saying which and why in one log line.

use std::fmt;
use std::sync::OnceLock;

use burn::tensor::Device;
use clap::ValueEnum;
use thiserror::Error;
use wgpu::DeviceType;

/// What the operator asked for (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRequest {
    /// A hardware GPU through wgpu if there is one, else the CPU.
    Auto,
    /// wgpu, on whatever adapter it finds (a software one is used, with a warning).
    Gpu,
    /// burn's CPU backend (flex).
    Cpu,
}

/// What the models actually run on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum Backend {
    Wgpu {
        adapter: String,
        api: String,
        /// True for a CPU-emulated adapter such as llvmpipe: correct, but slow.
        software: bool,
    },
    Cpu {
        implementation: &'static str,
    },
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Wgpu {
                adapter,
                api,
                software,
            } => {
                write!(f, "gpu (wgpu: {adapter} via {api})")?;
                if *software {
                    write!(f, " [software adapter, no hardware GPU]")?;
                }
                Ok(())
            }
            Backend::Cpu { implementation } => write!(f, "cpu (burn {implementation})"),
        }
    }
}

/// A burn device together with what it is.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub device: Device,
    pub backend: Backend,
}

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error(
        "no GPU adapter could be opened through wgpu ({0}); on Debian, `apt-get install \
         mesa-vulkan-drivers libvulkan1` provides a software one, or use --device cpu"
    )]
    NoGpu(String),
}

impl ComputeDevice {
    pub fn is_gpu(&self) -> bool {
        matches!(self.backend, Backend::Wgpu { .. })
    }

    /// burn's CPU backend.
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            backend: Backend::Cpu {
                implementation: "flex",
            },
        }
    }

    /// burn's wgpu backend on the adapter wgpu prefers (a high-performance one if present).
    /// The runtime can be registered once per process, so the first answer is kept and every
    /// later call gets the same device.
    pub fn gpu() -> Result<Self, DeviceError> {
        static GPU: OnceLock<Result<ComputeDevice, String>> = OnceLock::new();
        GPU.get_or_init(|| {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup()
                .map_err(|e| e.to_string())?;
            let info = setup.adapter.get_info();
            Ok(Self {
                device,
                backend: Backend::Wgpu {
                    adapter: info.name,
                    api: format!("{:?}", info.backend),
                    software: info.device_type == DeviceType::Cpu,
                },
            })
        })
        .clone()
        .map_err(DeviceError::NoGpu)
    }

    fn cpu_fallback(why: &str) -> Self {
        tracing::warn!(
            "{why}: running on the CPU fallback (burn flex); expect higher latency and lower \
             throughput than on a GPU"
        );
        Self::cpu()
    }

    /// Resolves the operator's request to a device, logging the choice once.
    pub fn select(request: DeviceRequest) -> Result<Self, DeviceError> {
        let chosen = match request {
            DeviceRequest::Cpu => Self::cpu(),
            DeviceRequest::Gpu => Self::gpu()?,
            DeviceRequest::Auto => match hardware_adapters().map(|_| Self::gpu()) {
                Ok(Ok(gpu)) => gpu,
                Ok(Err(why)) => return Ok(Self::cpu_fallback(&why.to_string())),
                Err(seen) => {
                    let why = format!("no hardware GPU found (adapters seen: {seen})");
                    return Ok(Self::cpu_fallback(&why));
                }
            },
        };
        if let Backend::Wgpu { software: true, .. } = chosen.backend {
            tracing::warn!(device = %chosen.backend, "running on a software GPU adapter: correct but slow");
        } else {
            tracing::info!(device = %chosen.backend, ?request, "compute device selected");
        }
        Ok(chosen)
    }
}

/// The names of the hardware (non-CPU) adapters wgpu can see. When there are none, the error
/// lists the software adapters that were seen, for the log line that explains the fallback.
fn hardware_adapters() -> Result<Vec<String>, String> {
    // Vulkan, Metal and DX12 only: OpenGL adapters are never compute-capable enough for burn,
    // and probing them spams errors on headless machines.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    let (hardware, software): (Vec<_>, Vec<_>) = adapters
        .iter()
        .map(|a| a.get_info())
        .partition(|info| info.device_type != DeviceType::Cpu);
    if hardware.is_empty() {
        let seen: Vec<String> = software
            .iter()
            .map(|info| format!("{} ({:?}, software)", info.name, info.backend))
            .collect();
        return Err(if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        });
    }
    Ok(hardware.into_iter().map(|info| info.name).collect())
}
