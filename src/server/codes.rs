//! The one mapping from what went wrong, in the protocol or in the engine, to the codes the
//! wire carries: a refused frame's `code` in its `{"type":"error"}` answer, and the close code
//! and reason a session ends with.

use serde_json::{Value, json};

use crate::engine::{Analysis, NotPrepared, Outcome};
use crate::frame::FrameError;
use crate::identity::Decision;

/// Why a message or frame was refused; the session goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameRefusal {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("frame too large: {0} bytes, at most {1}")]
    TooLarge(usize, usize),
    #[error("{0}")]
    Undecodable(FrameError),
    #[error("frames arrive faster than this session's {0} per second")]
    TooFast(f32),
    #[error("{0} frames already wait for their answers: wait for them before sending more")]
    Backlog(usize),
    #[error(
        "frames arrive with more pixels than this session's {0} a second: send smaller frames or fewer"
    )]
    TooManyPixels(u64),
    #[error("server overloaded, frame dropped: try again")]
    Overloaded,
    #[error("the server's memory for decoding frames is in use, frame dropped: try again")]
    DecodeMemoryBusy,
    #[error("frame missed its deadline")]
    DeadlineMissed,
    #[error("internal error, frame dropped: try again")]
    Internal,
}

/// The kinds of refusal the metrics count: one per wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    Malformed,
    TooLarge,
    Unsupported,
    TooFast,
    Internal,
    Overloaded,
    DeadlineMissed,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 7] = [
        RefusalKind::Malformed,
        RefusalKind::TooLarge,
        RefusalKind::Unsupported,
        RefusalKind::TooFast,
        RefusalKind::Internal,
        RefusalKind::Overloaded,
        RefusalKind::DeadlineMissed,
    ];

    /// The `code` of the `{"type":"error"}` answer, as the seed's HTTP-like codes.
    pub fn code(self) -> u16 {
        match self {
            RefusalKind::Malformed => 400,
            RefusalKind::TooLarge => 413,
            RefusalKind::Unsupported => 415,
            RefusalKind::TooFast => 429,
            RefusalKind::Internal => 500,
            RefusalKind::Overloaded => 503,
            RefusalKind::DeadlineMissed => 504,
        }
    }
}

impl FrameRefusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            FrameRefusal::Malformed(_) => RefusalKind::Malformed,
            FrameRefusal::TooLarge(..) | FrameRefusal::Undecodable(FrameError::TooLarge { .. }) => {
                RefusalKind::TooLarge
            }
            FrameRefusal::Undecodable(_) => RefusalKind::Unsupported,
            FrameRefusal::TooFast(_)
            | FrameRefusal::Backlog(_)
            | FrameRefusal::TooManyPixels(_) => RefusalKind::TooFast,
            FrameRefusal::Overloaded | FrameRefusal::DecodeMemoryBusy => RefusalKind::Overloaded,
            FrameRefusal::DeadlineMissed => RefusalKind::DeadlineMissed,
            FrameRefusal::Internal => RefusalKind::Internal,
        }
    }

    pub fn code(&self) -> u16 {
        self.kind().code()
    }

    pub fn to_json(&self) -> Value {
        json!({ "type": "error", "error": self.to_string(), "code": self.code() })
    }

    /// A frame's analysis, or the refusal that answers an engine outcome that is none.
    pub fn of_outcome(outcome: Outcome) -> Result<Analysis, FrameRefusal> {
        match outcome {
            Outcome::Done(analysis) => Ok(analysis),
            Outcome::Overloaded => Err(FrameRefusal::Overloaded),
            Outcome::DeadlineMissed => Err(FrameRefusal::DeadlineMissed),
            Outcome::Undecodable(error) => Err(FrameRefusal::Undecodable(error)),
            Outcome::Internal => Err(FrameRefusal::Internal),
        }
    }
}

impl From<NotPrepared> for FrameRefusal {
    fn from(not_prepared: NotPrepared) -> Self {
        match not_prepared {
            NotPrepared::Undecodable(error) => FrameRefusal::Undecodable(error),
            NotPrepared::DecodeMemoryBusy => FrameRefusal::DecodeMemoryBusy,
        }
    }
}

/// Why a session's socket closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    ClientClosed,
    LivenessPassed,
    EnrollmentComplete,
    /// The face changed during the enrollment, or is another user's already.
    EnrollmentFailed,
    /// Whether or not the face matched.
    AuthenticationComplete,
    /// A newer connection took over this session's token (a normal end, for this socket).
    Replaced,
    ShuttingDown,
    /// An authentication session ran out of time.
    AuthenticationTimedOut,
    FrameBudgetUsed,
    MalformedToken,
    UnknownSession,
    /// An issued session's token past its expiry.
    SessionExpired,
    /// An issued session's token that opened a socket before: tokens are single-use.
    SessionUsed,
    /// The session could not be looked up or started.
    Internal,
    /// No message within the session timeout.
    IdleTimeout,
    /// A message over the size limit (the WebSocket library's own limits derive from
    /// `--max-frame-bytes`).
    MessageTooBig,
    /// A frame that breaks the WebSocket protocol.
    ProtocolError,
    /// A text message that is not UTF-8.
    InvalidUtf8,
}

impl Close {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            Close::ClientClosed
            | Close::LivenessPassed
            | Close::EnrollmentComplete
            | Close::AuthenticationComplete
            | Close::Replaced => 1000,
            Close::ShuttingDown => 1001,
            Close::ProtocolError => 1002,
            Close::InvalidUtf8 => 1007,
            Close::MessageTooBig => 1009,
            // The seed's code for a failed enrollment (a duplicate face).
            Close::EnrollmentFailed => 4001,
            Close::MalformedToken => 4400,
            // The seed's one code for a session that cannot go on in time.
            Close::AuthenticationTimedOut
            | Close::SessionExpired
            | Close::SessionUsed
            | Close::IdleTimeout => 4401,
            Close::UnknownSession => 4404,
            Close::FrameBudgetUsed => 4429,
            Close::Internal => 4500,
        }
    }

    /// The close frame's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Close::ClientClosed => "closed by the client",
            Close::LivenessPassed => "liveness passed",
            Close::EnrollmentComplete => "enrollment complete",
            Close::EnrollmentFailed => "enrollment failed",
            Close::AuthenticationComplete => "authentication complete",
            Close::Replaced => "replaced by a newer connection with this session token",
            Close::ShuttingDown => "server shutting down",
            Close::AuthenticationTimedOut => "authentication timed out",
            Close::FrameBudgetUsed => "session frame budget used up",
            Close::MalformedToken => "malformed session token",
            Close::UnknownSession => "unknown session: create it first",
            Close::SessionExpired => "session expired",
            Close::SessionUsed => "session already used",
            Close::Internal => "internal error",
            Close::IdleTimeout => "no message within the session timeout",
            Close::MessageTooBig => "message too big: see --max-frame-bytes",
            Close::ProtocolError => "WebSocket protocol error",
            Close::InvalidUtf8 => "text message is not UTF-8",
        }
    }
}

impl Close {
    /// How a session whose identity step decided closes.
    pub fn after(decision: &Decision) -> Close {
        match decision {
            Decision::Enrolled { .. } => Close::EnrollmentComplete,
            Decision::EnrollmentFailed { .. } => Close::EnrollmentFailed,
            Decision::Authenticated { .. } | Decision::NotAuthenticated { .. } => {
                Close::AuthenticationComplete
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_kind_has_its_own_code() {
        let mut codes: Vec<u16> = RefusalKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), RefusalKind::ALL.len());
    }

    #[test]
    fn a_frame_too_large_is_413_whether_seen_in_bytes_or_in_its_header() {
        assert_eq!(FrameRefusal::TooLarge(10, 5).code(), 413);
        let header = FrameRefusal::Undecodable(FrameError::TooLarge { max_side: 1 });
        assert_eq!(header.kind(), RefusalKind::TooLarge);
        let damaged = FrameRefusal::Undecodable(FrameError::Damaged("x".into()));
        assert_eq!(damaged.code(), 415);
    }

    #[test]
    fn engine_outcomes_map_to_their_refusals() {
        let code = |outcome| FrameRefusal::of_outcome(outcome).unwrap_err().code();
        assert_eq!(code(Outcome::Overloaded), 503);
        assert_eq!(code(Outcome::DeadlineMissed), 504);
        assert_eq!(code(Outcome::Internal), 500);
        assert_eq!(code(Outcome::Undecodable(FrameError::NotAnImage)), 415);
    }
}
