//! The JSON a session sends (`shared/PROTOCOL.md`): the seed's fields under their own names,
//! and our extensions (pose, indicators, quality, challenge, timings) beside them. Only shapes
//! live here; what goes in them is decided by the session and the liveness check.

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::identity::{Conclusion, Decision};
use crate::liveness::check::{Challenge, Indicators, LivenessCheck, Progress, SessionKind};
use crate::liveness::pose::HeadPose;
use crate::liveness::quality::{Quality, Rejection};
use crate::pipeline::face_mesh::FaceLandmarks;
use crate::server::codes::FrameRefusal;
use crate::server::metrics::Outcome;

/// The first message of every session.
pub fn connection_established(token: &str, check: &LivenessCheck, timeout_secs: u64) -> Value {
    let progress = check.progress();
    let challenges = if check.asks_challenges() {
        json!(Challenge::SEQUENCE)
    } else {
        json!([])
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
    /// `face.bounding_box()`, as the worker already measured it.
    pub face_box: [f32; 4],
    pub faces: usize,
    pub quality: &'a Quality,
}

/// An answer ready to go out: its JSON text, and what it tells the metrics about its frame.
pub struct Answer {
    pub json: String,
    /// `None` for the messages that answer no frame (the greeting, `pong`, the verdict).
    pub outcome: Option<Outcome>,
}

impl Answer {
    /// A message that answers no frame.
    pub fn message(message: Value) -> Self {
        Self {
            json: message.to_string(),
            outcome: None,
        }
    }

    /// A frame's `{"type":"error"}`, with the client's `id` when it sent one.
    pub fn refusal(refusal: &FrameRefusal, id: Option<Value>) -> Self {
        Self {
            json: with_id(refusal.to_json(), id).to_string(),
            outcome: Some(Outcome::Refused(refusal.kind())),
        }
    }

    fn frame(answer: &impl Serialize, outcome: Outcome) -> Self {
        Self {
            json: serde_json::to_string(answer).expect("answers serialise"),
            outcome: Some(outcome),
        }
    }
}

/// `frame_processed` for a usable face: the session's progress (the seed's liveness fields)
/// with this frame's measures.
pub fn face_processed(
    frame: FrameContext<'_>,
    report: &FaceReport<'_>,
    indicators: &Indicators,
    progress: &Progress,
) -> Answer {
    let answer = FaceAnswer {
        kind: "frame_processed",
        success: true,
        frames_processed: frame.frames_processed,
        rejection: None,
        progress,
        face: FaceFields::new(report, frame.timings),
        measures: Some(Measures {
            motion_score: indicators.motion,
            head_pose: indicators.head_pose,
            eye_aspect_ratio: indicators.eye_aspect_ratio,
            mouth_aspect_ratio: indicators.mouth_aspect_ratio,
            indicators,
        }),
        id: frame.id,
    };
    Answer::frame(&answer, Outcome::Face)
}

/// `frame_rejected`: a face was found, but the frame is unusable for the reason given. It
/// carries the face, so a client can still draw it, and the progress so far, whose message is
/// the advice.
pub fn frame_rejected(
    frame: FrameContext<'_>,
    report: &FaceReport<'_>,
    progress: &Progress,
) -> Answer {
    let reason = report.quality.rejection;
    let error = reason.map(|r| r.advice());
    let progress = Progress {
        message: error.unwrap_or(progress.message),
        ..progress.clone()
    };
    let answer = FaceAnswer {
        kind: "frame_rejected",
        success: false,
        frames_processed: frame.frames_processed,
        rejection: Some(RejectionFields { reason, error }),
        progress: &progress,
        face: FaceFields::new(report, frame.timings),
        measures: None,
        id: frame.id,
    };
    Answer::frame(&answer, Outcome::QualityRejected)
}

/// What every answer to a frame carries besides its measures.
pub struct FrameContext<'a> {
    pub frames_processed: u64,
    pub timings: &'a Timings,
    /// The client's `id` for the frame, echoed back.
    pub id: Option<Value>,
}

#[derive(Serialize)]
struct FaceAnswer<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    success: bool,
    frames_processed: u64,
    #[serde(flatten)]
    rejection: Option<RejectionFields>,
    #[serde(flatten)]
    progress: &'a Progress,
    #[serde(flatten)]
    face: FaceFields<'a>,
    #[serde(flatten)]
    measures: Option<Measures<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Value>,
}

#[derive(Serialize)]
struct RejectionFields {
    reason: Option<Rejection>,
    error: Option<&'static str>,
}

#[derive(Serialize)]
struct FaceFields<'a> {
    quality_score: f32,
    quality: &'a Quality,
    visual_data: VisualData<'a>,
    face_presence: f32,
    faces: usize,
    timings: &'a Timings,
}

impl<'a> FaceFields<'a> {
    fn new(report: &FaceReport<'a>, timings: &'a Timings) -> Self {
        Self {
            quality_score: report.quality.score,
            quality: report.quality,
            visual_data: VisualData {
                face_bbox: report.face_box,
                landmarks: PixelPoints(&report.face.points),
            },
            face_presence: report.face.presence,
            faces: report.faces,
            timings,
        }
    }
}

#[derive(Serialize)]
struct VisualData<'a> {
    face_bbox: [f32; 4],
    landmarks: PixelPoints<'a>,
}

/// The seed's liveness measures under their own names, and all of them as `indicators`.
#[derive(Serialize)]
struct Measures<'a> {
    motion_score: f32,
    head_pose: HeadPose,
    eye_aspect_ratio: f32,
    mouth_aspect_ratio: f32,
    indicators: &'a Indicators,
}

/// Points in image pixels, each coordinate to a hundredth of a pixel as the seed rounds them:
/// the model's own error is about a pixel, and all of float's digits would make the landmarks
/// three times as long to write, send and parse.
struct PixelPoints<'a>(&'a [[f32; 3]]);

impl Serialize for PixelPoints<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let to_hundredths = |value: f32| (value * 100.0).round() / 100.0;
        serializer.collect_seq(self.0.iter().map(|point| point.map(to_hundredths)))
    }
}

/// `frame_processed` with no face, as the seed answers it.
pub fn no_face(frame: FrameContext<'_>, progress: &Progress) -> Answer {
    let answer = json!({
        "type": "frame_processed",
        "success": false,
        "error": "No face detected",
        "frames_processed": frame.frames_processed,
        "liveness_verified": progress.liveness_verified,
        "liveness_score": progress.liveness_score,
        "timings": frame.timings,
    });
    Answer {
        json: with_id(answer, frame.id).to_string(),
        outcome: Some(Outcome::NoFace),
    }
}

/// An open-mode session's last message when liveness is proven: it has no identity step, and
/// `next_step` says so.
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

/// An issued session's last message: the seed's `enrollment_complete`, `enrollment_failed`
/// or `authentication_complete`, with our extensions (`session_token`, `liveness_score`,
/// `result_token`, and `reason` and `error_code` for a failure) beside them.
pub fn identity_concluded(
    token: &str,
    frames_processed: u64,
    progress: &Progress,
    conclusion: &Conclusion,
) -> Value {
    let Conclusion {
        decision,
        anti_spoofing_score,
        encrypted_data,
        result_token,
        ..
    } = conclusion;
    let mut answer = match decision {
        Decision::Enrolled {
            user_id,
            enrollment_id,
            templates_stored,
            quality_score,
            similarity_with_old_photo,
        } => json!({
            "type": "enrollment_complete",
            "success": true,
            "enrollment_id": enrollment_id,
            "user_id": user_id,
            "templates_stored": templates_stored,
            "quality_score": quality_score,
            "similarity_with_old_photo": similarity_with_old_photo,
            "message": "Enrollment complete",
        }),
        Decision::EnrollmentFailed {
            error,
            error_code,
            message,
            similarity,
            ..
        } => json!({
            "type": "enrollment_failed",
            "success": false,
            "error": error,
            "error_code": error_code,
            "message": message,
            // The other user's id is the tenant's to know, not the browser's: it is stored
            // with the session's outcome and left out here.
            "details": {
                "reason": message,
                "similarity_score": similarity,
                "conflicting_user": Value::Null,
            },
        }),
        Decision::Authenticated {
            user_id,
            confidence,
        } => json!({
            "type": "authentication_complete",
            "success": true,
            "authenticated": true,
            "user_id": user_id,
            "confidence": confidence,
            "message": "Authentication successful",
        }),
        Decision::NotAuthenticated {
            reason,
            message,
            confidence,
        } => json!({
            "type": "authentication_complete",
            "success": false,
            "authenticated": false,
            "user_id": Value::Null,
            "confidence": confidence.unwrap_or(0.0),
            "reason": reason,
            "error_code": reason.to_uppercase(),
            "message": message,
        }),
    };
    let fields = [
        ("session_token", json!(token)),
        ("frames_processed", json!(frames_processed)),
        ("liveness_verified", json!(progress.liveness_verified)),
        ("liveness_score", json!(progress.liveness_score)),
        ("blinks_detected", json!(progress.blinks_detected)),
        ("motion_verified", json!(progress.motion_events > 0)),
        ("motion_events", json!(progress.motion_events)),
        // The seed's field, which it leaves at 0.0; here the session's score, 0 spoof .. 1
        // real (null where no frame was judged).
        ("anti_spoofing_score", json!(anti_spoofing_score)),
        ("encrypted_data", json!(encrypted_data)),
        ("result_token", json!(result_token)),
        ("visual_data", json!({})),
    ];
    for (key, value) in fields {
        answer[key] = value;
    }
    answer
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

/// `answer` with the client's `id` for its frame, when it sent one.
fn with_id(mut answer: Value, id: Option<Value>) -> Value {
    if let Some(id) = id {
        answer["id"] = id;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::check::LivenessRules;

    fn quality(rejection: Option<Rejection>) -> Quality {
        Quality {
            score: 0.75,
            size: 1.0,
            sharpness: 0.5,
            brightness: 1.0,
            centring: 1.0,
            frontal: 1.0,
            face_fraction: 0.4,
            laplacian_variance: 120.0,
            mean_luma: 110.0,
            rejection,
        }
    }

    fn answer_for(rejection: Option<Rejection>, id: Option<Value>) -> Value {
        let face = FaceLandmarks {
            presence: 0.99,
            points: vec![[279.076_14, 130.368_32, -12.070_358], [1.0, 2.004_9, 0.0]],
        };
        let quality = quality(rejection);
        let report = FaceReport {
            face: &face,
            face_box: face.bounding_box(),
            faces: 1,
            quality: &quality,
        };
        let timings = Timings {
            queue_wait_ms: 1.0,
            inference_ms: 2.0,
            total_ms: 3.5,
            batch_size: 4,
        };
        let frame = FrameContext {
            frames_processed: 7,
            timings: &timings,
            id,
        };
        let check = LivenessCheck::new(SessionKind::Enrollment, LivenessRules::default());
        let progress = check.progress();
        let answer = match rejection {
            Some(_) => frame_rejected(frame, &report, &progress),
            None => {
                let indicators = Indicators {
                    eye_aspect_ratio_left: 0.3,
                    eye_aspect_ratio_right: 0.28,
                    eye_aspect_ratio: 0.29,
                    blink_threshold: 0.22,
                    eyes_closed: false,
                    mouth_aspect_ratio: 0.1,
                    head_pose: HeadPose {
                        yaw: 5.0,
                        pitch: -3.0,
                        roll: 1.0,
                    },
                    motion: 0.02,
                };
                face_processed(frame, &report, &indicators, &progress)
            }
        };
        serde_json::from_str(&answer.json).expect("valid JSON")
    }

    #[test]
    fn a_face_answer_carries_the_seed_fields_and_landmarks_to_hundredths() {
        let answer = answer_for(None, Some(json!("frame-7")));
        assert_eq!(answer["type"], "frame_processed");
        assert_eq!(answer["success"], true);
        assert_eq!(answer["frames_processed"], 7);
        assert_eq!(answer["id"], "frame-7");
        assert_eq!(answer["liveness_verified"], false);
        assert_eq!(answer["blinks_required"], json!(1));
        assert_eq!(answer["head_pose"]["yaw"], 5.0);
        assert_eq!(answer["indicators"]["blink_threshold"], json!(0.22));
        assert_eq!(answer["quality_score"], 0.75);
        assert_eq!(answer["timings"]["batch_size"], 4);
        assert!(answer["reason"].is_null() && answer["message"].is_string());
        assert_eq!(
            answer["visual_data"]["landmarks"],
            json!([[279.08, 130.37, -12.07], [1.0, 2.0, 0.0]])
        );
        let bbox = &answer["visual_data"]["face_bbox"];
        assert_eq!(bbox.as_array().map(Vec::len), Some(4));
    }

    #[test]
    fn a_rejected_face_says_why_in_its_message() {
        let answer = answer_for(Some(Rejection::TooDark), None);
        assert_eq!(answer["type"], "frame_rejected");
        assert_eq!(answer["success"], false);
        assert_eq!(answer["reason"], json!(Rejection::TooDark));
        assert_eq!(answer["error"], Rejection::TooDark.advice());
        assert_eq!(answer["message"], answer["error"]);
        assert!(answer.get("id").is_none() && answer.get("indicators").is_none());
        assert_eq!(
            answer["visual_data"]["landmarks"][1],
            json!([1.0, 2.0, 0.0])
        );
    }
}
