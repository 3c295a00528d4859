//! Launching face-service's own WGSL compute shaders (`shaders/`) on burn's buffers: the
//! helpers every launch shares. The shaders' callers live with what they compute (the crop in
//! `pipeline::crop::gpu`, the attention model's operators in `models::attention::kernels`),
//! each beside its CPU twin.

pub mod wgsl;
