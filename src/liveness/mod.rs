//! Liveness, computed from the mesh as the seed's `LivenessDetector` does: pure logic, fed one
//! frame's landmarks at a time, no I/O and no device.

pub mod blinks;
pub mod events;
pub mod indicators;
