//! Which session tokens may open a WebSocket, and what a REST-issued session leaves behind.
//! A token issued over REST runs the session it was issued for, once, before it expires. In
//! open mode any other well-formed token starts a liveness session too (the seed's load test
//! and development rely on it); otherwise those are refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::identity::{Decision, Purpose};
use crate::liveness::check::{SessionKind, Verdict};
use crate::server::codes::Close;
use crate::server::protocol::token_is_well_formed;
use crate::server::registry::Registry;
use crate::server::session::SessionEnd;
use crate::store::sessions::{Claim, SessionResult};
use crate::tenants::Tenants;

#[derive(Debug)]
pub struct Admission {
    open: bool,
    tenants: Tenants,
    /// This process, which holds the sessions it admits.
    registry: Arc<Registry>,
}

/// A session a token may run.
#[derive(Debug, Clone, PartialEq)]
pub enum Admitted {
    /// Open mode, a token nobody issued: liveness alone, nothing stored.
    Open,
    Issued(IssuedSession),
}

/// A session issued over REST, as its socket runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedSession {
    pub client_id: String,
    pub session_id: String,
    pub kind: SessionKind,
    pub purpose: Purpose,
    /// The blinks an authentication must show, when its creator asked for a number.
    pub required_blinks: Option<usize>,
    /// Usable frames before liveness may pass: the enrollment's `target_samples`, the
    /// authentication's `min_frames_required`.
    pub min_frames: usize,
    /// Whether the enrollment asked for the challenges (`metadata.challenges`).
    pub challenges: Option<bool>,
}

impl IssuedSession {
    fn of(session: crate::store::sessions::SessionRow) -> IssuedSession {
        let metadata: serde_json::Value =
            serde_json::from_str(&session.metadata).unwrap_or_default();
        let number = |key: &str| metadata[key].as_u64().map(|n| n as usize);
        let (kind, purpose, min_frames) = match (
            session.kind.as_str(),
            session.external_user_id,
            session.enrollment_id,
        ) {
            ("enrollment", Some(user), Some(enrollment_id)) => (
                SessionKind::Enrollment,
                Purpose::Enrollment {
                    user,
                    enrollment_id,
                },
                number("target_samples"),
            ),
            (_, Some(user), _) => (
                SessionKind::Authentication,
                Purpose::Verification { user },
                number("min_frames_required"),
            ),
            (_, None, _) => (
                SessionKind::Authentication,
                Purpose::Identification,
                number("min_frames_required"),
            ),
        };
        IssuedSession {
            kind,
            purpose,
            required_blinks: session.required_blinks.map(|n| n as usize),
            min_frames: min_frames.unwrap_or(0),
            challenges: metadata["challenges"].as_bool(),
            client_id: session.client_id,
            session_id: session.id,
        }
    }
}

impl Admission {
    pub fn new(open: bool, tenants: Tenants, registry: Arc<Registry>) -> Self {
        Self {
            open,
            tenants,
            registry,
        }
    }

    /// The session `token` may run, or the close that refuses it.
    pub async fn admit(&self, token: &str) -> Result<Admitted, Close> {
        if !token_is_well_formed(token) {
            return Err(Close::MalformedToken);
        }
        let claim = self
            .tenants
            .store()
            .claim_session(token, crate::store::now(), self.registry.id())
            .await;
        match claim {
            Ok(Claim::Claimed(session)) => Ok(Admitted::Issued(IssuedSession::of(*session))),
            Ok(Claim::Unknown) if self.open => Ok(Admitted::Open),
            Ok(Claim::Unknown) => Err(Close::UnknownSession),
            Ok(Claim::Expired) => Err(Close::SessionExpired),
            Ok(Claim::Used) => Err(Close::SessionUsed),
            Err(error) => {
                tracing::error!(%error, "looking the session token up");
                Err(Close::Internal)
            }
        }
    }

    /// Stores how an issued session ended, for its client to read over REST.
    pub async fn record_end(&self, session: &IssuedSession, end: &SessionEnd) {
        let progress = &end.progress;
        let result = SessionResult {
            status: end_status(end),
            completed_at: crate::store::now(),
            frames_processed: end.frames_processed as i64,
            liveness_verified: progress.liveness_verified,
            liveness_score: f64::from(progress.liveness_score),
            blinks_detected: progress.blinks_detected as i64,
            motion_events: progress.motion_events as i64,
            outcome: end
                .conclusion
                .as_ref()
                .map(|conclusion| conclusion.outcome.to_string()),
        };
        let stored = self
            .tenants
            .store()
            .finish_session(
                &session.client_id,
                &session.session_id,
                self.registry.id(),
                &result,
            )
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                status = result.status,
                "the session's outcome is not stored: other processes took this one for dead \
                 and ended the session as disconnected"
            ),
            Err(error) => tracing::error!(%error, "storing the session's outcome"),
        }
    }
}

/// The seed's session status for how a socket ended.
fn end_status(end: &SessionEnd) -> &'static str {
    if let Some(conclusion) = &end.conclusion {
        return match conclusion.decision {
            Decision::EnrollmentFailed { .. } => "failed",
            _ => "completed",
        };
    }
    match (end.progress.verdict, end.close) {
        (Verdict::Passed, _) => "completed",
        (Verdict::TimedOut, _) | (Verdict::InProgress, Some(Close::IdleTimeout)) => "timeout",
        (Verdict::InProgress, Some(Close::FrameBudgetUsed | Close::Internal)) => "failed",
        (Verdict::InProgress, _) => "disconnected",
    }
}

/// The tokens with an open WebSocket. A second connection with a token in use replaces the
/// first (a reloaded page reconnecting to its session): the first is told to close.
#[derive(Debug, Default)]
pub struct ActiveTokens {
    by_token: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    next_claim: AtomicU64,
}

impl ActiveTokens {
    /// Takes `token` for a new connection. The receiver fires if a later connection takes it.
    pub fn claim(&self, token: &str) -> (u64, oneshot::Receiver<()>) {
        let claim = self.next_claim.fetch_add(1, Ordering::Relaxed);
        let (replaced, on_replaced) = oneshot::channel();
        let previous = self
            .by_token
            .lock()
            .expect("the token map is never poisoned")
            .insert(token.to_owned(), (claim, replaced));
        if let Some((_, tell_previous)) = previous {
            let _ = tell_previous.send(());
        }
        (claim, on_replaced)
    }

    /// Gives `token` back when its connection ends, unless a later one holds it now.
    pub fn release(&self, token: &str, claim: u64) {
        let mut by_token = self
            .by_token
            .lock()
            .expect("the token map is never poisoned");
        if by_token
            .get(token)
            .is_some_and(|(holder, _)| *holder == claim)
        {
            by_token.remove(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_connection_replaces_the_first() {
        let tokens = ActiveTokens::default();
        let (first, mut first_replaced) = tokens.claim("t");
        let (second, mut second_replaced) = tokens.claim("t");
        assert_eq!(first_replaced.try_recv(), Ok(()));
        // The first one leaving does not free the token the second holds.
        tokens.release("t", first);
        let (_, _third_replaced) = tokens.claim("t");
        assert_eq!(second_replaced.try_recv(), Ok(()));
        tokens.release("t", second);
    }
}
