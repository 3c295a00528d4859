//! The JSON a session sends (`shared/PROTOCOL.md`): the seed's fields under their own names,
//! and our extensions (pose, indicators, quality, challenge, timings) beside them. Only shapes
//! live here; what goes in them is decided by the session and the liveness check.

use serde::Serialize;
use serde_json::{Value, json};

use crate::liveness::check::{Challenge, Indicators, LivenessCheck, Progress, SessionKind};
use crate::liveness::quality::Quality;
use crate::pipeline::face_mesh::FaceLandmarks;

/// The first message of every session.
pub fn connection_established(token: &str, check: &LivenessCheck, timeout_secs: u64) -> Value {
    let progress = check.progress();
    let challenges = match check.kind() {
        SessionKind::Enrollment => json!(Challenge::SEQUENCE),
        SessionKind::Authentication => json!([]),
    };
    json!({
        "type": "connection_established",
        "session_token": token,
        "session_type": check.kind().name(),
        "status": "active",
        "timeout": timeout_secs,
        "blinks_required": progress.blinks_required,
        "challenges": challenges,
        "message": progress.message,
    })
}

/// What the device did for one frame, for clients that show latency.
#[derive(Serialize)]
pub struct Timings {
    pub queue_wait_ms: f64,
    pub inference_ms: f64,
    pub total_ms: f64,
    pub batch_size: usize,
}

/// The face of a frame and all that was measured on it.
pub struct FaceReport<'a> {
    pub face: &'a FaceLandmarks,
    /// `face.bounding_box()`, as the session already computed it.
    pub face_box: [f32; 4],
    pub faces: usize,
    pub quality: &'a Quality,
}

/// `frame_processed` for a usable face: the session's progress (the seed's liveness fields)
/// merged with this frame's measures.
pub fn face_processed(
    frames_processed: u64,
    report: &FaceReport<'_>,
    indicators: &Indicators,
    progress: &Progress,
    timings: &Timings,
) -> Value {
    let mut answer = json!({
        "type": "frame_processed",
        "success": true,
        "frames_processed": frames_processed,
    });
    merge(&mut answer, json!(progress));
    merge(&mut answer, face_fields(report, timings));
    merge(
        &mut answer,
        json!({
            "motion_score": indicators.motion,
            "head_pose": indicators.head_pose,
            "eye_aspect_ratio": indicators.eye_aspect_ratio,
            "mouth_aspect_ratio": indicators.mouth_aspect_ratio,
            "indicators": indicators,
        }),
    );
    answer
}

/// `frame_rejected`: a face was found, but the frame is unusable for the reason given. It
/// carries the face, so a client can still draw it, and the progress so far.
pub fn frame_rejected(
    frames_processed: u64,
    report: &FaceReport<'_>,
    progress: &Progress,
    timings: &Timings,
) -> Value {
    let rejection = report.quality.rejection;
    let mut answer = json!({
        "type": "frame_rejected",
        "success": false,
        "frames_processed": frames_processed,
        "reason": rejection,
        "error": rejection.map(|r| r.advice()),
    });
    merge(&mut answer, json!(progress));
    merge(&mut answer, face_fields(report, timings));
    answer["message"] = answer["error"].clone();
    answer
}

/// `frame_processed` with no face, as the seed answers it.
pub fn no_face(frames_processed: u64, progress: &Progress, timings: &Timings) -> Value {
    json!({
        "type": "frame_processed",
        "success": false,
        "error": "No face detected",
        "frames_processed": frames_processed,
        "liveness_verified": progress.liveness_verified,
        "liveness_score": progress.liveness_score,
        "timings": timings,
    })
}

/// The session's last message when liveness is proven. Identity matching, when it exists,
/// follows this step; until then `next_step` says there is none.
pub fn liveness_passed(
    token: &str,
    kind: SessionKind,
    frames_processed: u64,
    progress: &Progress,
) -> Value {
    json!({
        "type": "liveness_passed",
        "session_token": token,
        "session_type": kind.name(),
        "liveness_verified": true,
        "liveness_score": progress.liveness_score,
        "blinks_detected": progress.blinks_detected,
        "motion_events": progress.motion_events,
        "frames_processed": frames_processed,
        "next_step": Value::Null,
        "message": "Liveness passed",
    })
}

/// An authentication session's last message when its time ran out.
pub fn authentication_timeout(
    token: &str,
    timeout_secs: u64,
    frames_processed: u64,
    progress: &Progress,
) -> Value {
    json!({
        "type": "authentication_timeout",
        "session_token": token,
        "error": format!("Liveness was not shown within {timeout_secs} s"),
        "liveness_verified": false,
        "liveness_score": progress.liveness_score,
        "blinks_detected": progress.blinks_detected,
        "blinks_required": progress.blinks_required,
        "motion_events": progress.motion_events,
        "frames_processed": frames_processed,
    })
}

fn face_fields(report: &FaceReport<'_>, timings: &Timings) -> Value {
    json!({
        "quality_score": report.quality.score,
        "quality": report.quality,
        "visual_data": {
            "face_bbox": report.face_box,
            "landmarks": report.face.points,
        },
        "face_presence": report.face.presence,
        "faces": report.faces,
        "timings": timings,
    })
}

/// Adds `extra`'s fields to `answer`, both JSON objects.
fn merge(answer: &mut Value, extra: Value) {
    if let (Value::Object(answer), Value::Object(extra)) = (answer, extra) {
        answer.extend(extra);
    }
}
