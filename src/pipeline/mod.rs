//! MediaPipe's FaceMesh pipeline around the two networks: anchors and detection decoding,
//! regions of interest, and the crop that feeds the landmark model.

pub mod anchors;
pub mod crop;
pub mod detection;
pub mod projection;
pub mod roi;
