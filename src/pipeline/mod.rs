//! MediaPipe's FaceMesh pipeline around the two networks: anchors and detection decoding,
//! regions of interest, the crop that feeds the landmark model, the two model stages on whole
//! frames, tracking from frame to frame, the alignment that feeds the recognition model, and the
//! crops the anti-spoofing networks judge.

pub mod alignment;
pub mod anchors;
pub mod anti_spoofing;
pub mod crop;
pub mod detection;
pub mod face_mesh;
pub mod projection;
pub mod recognition;
pub mod roi;
pub mod tracker;
