//! face-service: real-time face landmarks and liveness over WebSockets.
//!
//! The library holds everything the `face-service` binary is made of. One frame's path reads
//! top-down through the rooms, and no room imports one above it:
//! - [`server`]: `face-service serve`, the seed's protocol over axum: routes, sessions,
//!   admission, answers, metrics; it maps engine outcomes to wire codes, once;
//! - [`api`]: the seed's REST API beside it (credentials, users, REST-issued sessions, audit
//!   log, OpenAPI), over [`tenants`] (clients and their credentials) and [`store`] (the one
//!   module with SQL: SQLite by default, PostgreSQL to share);
//! - [`identity`]: what an issued session decides after its liveness check: an enrollment's
//!   templates stored, an authentication matched against its tenant's gallery; [`webhooks`]
//!   tells the tenant's backend;
//! - [`engine`]: the device: batching frames from many sessions, the worker threads, the model
//!   stages, answering each frame with a domain outcome;
//! - [`pipeline`]: FaceMesh around the models: detections, regions of interest, crops, tracking;
//! - [`models`]: the face networks (MediaPipe's, and SFace for recognition) as burn modules,
//!   loaded from their weight files.
//!
//! Beside them: [`liveness`], the seed's liveness checks as pure logic; [`device`], the one
//! place that picks the GPU (wgpu) or the CPU fallback (flex); [`tflite`], reading MediaPipe's
//! weight files; [`onnx`], reading the recognition model's; [`matching`], comparing face
//! templates; [`gpu`], launching the WGSL shaders in `shaders/`; [`frame`], decoding what
//! clients send; [`overlay`], drawing what the service found; [`bench`], the load harness
//! behind `face-service bench`; [`deploy`], the deployment files printed from `serve`'s own
//! flags; [`cli`], the commands.

pub mod api;
pub mod bench;
pub mod cli;
pub mod deploy;
pub mod device;
pub mod engine;
pub mod frame;
pub mod gpu;
pub mod identity;
pub mod liveness;
pub mod matching;
pub mod models;
#[cfg(test)]
pub(crate) mod mutations;
pub mod onnx;
pub mod overlay;
pub mod pipeline;
pub mod server;
pub mod store;
pub mod tenants;
pub mod tflite;
pub mod webhooks;
