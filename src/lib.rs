//! face-service: real-time face landmarks and liveness over WebSockets.
//!
//! The library holds everything the `face-service` binary is made of. Read it top-down:
//! - [`device`]: the one place that picks the GPU (wgpu) or the CPU fallback (flex);
//! - [`tflite`]: reading MediaPipe's `.tflite` weight files;
//! - [`models`]: MediaPipe's face networks as burn modules, loaded from those files;
//! - [`pipeline`]: FaceMesh around them: detections, regions of interest, crops, tracking;
//! - [`gpu`]: launching the WGSL shaders in `shaders/` (each has a CPU twin);
//! - [`liveness`]: the seed's liveness checks as pure logic (indicators, pose, quality, challenges);
//! - [`scheduler`]: batching frames from many sessions for the device;
//! - [`server`]: `face-service serve`, the seed's WebSocket protocol over axum;
//! - [`frame`]: decoding what clients send; [`overlay`]: drawing what the service found;
//! - [`bench`]: the load harness behind `face-service bench`.

pub mod bench;
pub mod device;
pub mod frame;
pub mod gpu;
pub mod liveness;
pub mod models;
pub mod overlay;
pub mod pipeline;
pub mod scheduler;
pub mod server;
pub mod tflite;
