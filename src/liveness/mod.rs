//! Liveness, computed from the mesh as the seed's `LivenessDetector` does: pure logic, fed one
//! frame's landmarks at a time, no I/O and no device. `check` strings the rest together into a
//! session's challenges and verdict.

pub mod blinks;
pub mod check;
pub mod events;
pub mod indicators;
pub mod pose;
pub mod quality;
#[cfg(test)]
pub(crate) mod synthetic;
