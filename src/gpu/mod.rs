//! Work done by face-service's own compute shaders (`shaders/`), each with a CPU twin.

pub mod crop;
