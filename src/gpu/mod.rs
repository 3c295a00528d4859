//! Launching face-service's own compute shaders (`shaders/`) on burn's tensors; each has a CPU
//! twin. The attention model's patch sampling lives with the model
//! (`models::attention::sampling`).

pub mod crop;
pub mod wgsl;
