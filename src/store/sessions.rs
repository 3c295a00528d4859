//! Sessions issued over REST: created with their enrollment (for enrollment sessions), claimed
//! once by the WebSocket that runs them, and given their outcome when that socket closes.

use super::{Millis, Page, PageRequest, Store, StoreResult, conflict_or_error};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionRow {
    pub client_id: String,
    pub id: String,
    pub token: String,
    /// `enrollment` or `authentication`.
    pub kind: String,
    pub external_user_id: Option<String>,
    pub enrollment_id: Option<String>,
    /// The client's `session_type`: `webcam`, `mobile` or `api`.
    pub session_type: String,
    pub status: String,
    /// A JSON object, as text.
    pub metadata: String,
    pub required_blinks: Option<i64>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub opened_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub frames_processed: Option<i64>,
    pub liveness_verified: Option<i64>,
    pub liveness_score: Option<f64>,
    pub blinks_detected: Option<i64>,
    pub motion_events: Option<i64>,
    /// The process whose socket runs it, once opened (`processes`).
    pub process_id: Option<String>,
    /// How its identity step ended, a JSON object as text, once over.
    pub outcome: Option<String>,
}

/// How a session ended, as its socket saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionResult {
    /// `completed`, `failed`, `timeout` or `disconnected`.
    pub status: &'static str,
    pub completed_at: Millis,
    pub frames_processed: i64,
    pub liveness_verified: bool,
    pub liveness_score: f64,
    pub blinks_detected: i64,
    pub motion_events: i64,
    /// The identity step's outcome, a JSON object as text, where it came to one.
    pub outcome: Option<String>,
}

/// What opening a socket with a token found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The session is the caller's to run, now marked opened.
    Claimed(Box<SessionRow>),
    /// No session has this token.
    Unknown,
    Expired,
    /// Opened before, or over.
    Used,
}

const COLUMNS: &str = "client_id, id, token, kind, external_user_id, enrollment_id, session_type, \
                       status, metadata, required_blinks, created_at, expires_at, opened_at, \
                       completed_at, frames_processed, liveness_verified, liveness_score, \
                       blinks_detected, motion_events, process_id, outcome";

impl Store {
    /// Stores a new session, and for an enrollment session its pending enrollment, together.
    pub async fn insert_session(
        &self,
        session: &SessionRow,
        target_samples: Option<i64>,
    ) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        if let (Some(enrollment_id), Some(user), Some(target_samples)) = (
            &session.enrollment_id,
            &session.external_user_id,
            target_samples,
        ) {
            sqlx::query(
                "INSERT INTO enrollments (client_id, id, external_user_id, status, \
                 target_samples, quality_score, created_at) \
                 VALUES ($1, $2, $3, 'pending', $4, NULL, $5)",
            )
            .bind(session.client_id.as_str())
            .bind(enrollment_id.as_str())
            .bind(user.as_str())
            .bind(target_samples)
            .bind(session.created_at)
            .execute(&mut *transaction)
            .await
            .map_err(conflict_or_error)?;
        }
        sqlx::query(
            "INSERT INTO sessions (client_id, id, token, kind, external_user_id, enrollment_id, \
             session_type, status, metadata, required_blinks, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(session.client_id.as_str())
        .bind(session.id.as_str())
        .bind(session.token.as_str())
        .bind(session.kind.as_str())
        .bind(session.external_user_id.as_deref())
        .bind(session.enrollment_id.as_deref())
        .bind(session.session_type.as_str())
        .bind(session.status.as_str())
        .bind(session.metadata.as_str())
        .bind(session.required_blinks)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&mut *transaction)
        .await
        .map_err(conflict_or_error)?;
        transaction.commit().await?;
        Ok(())
    }

    /// The client's session with this id or this token.
    pub async fn session(
        &self,
        client_id: &str,
        id_or_token: &str,
    ) -> StoreResult<Option<SessionRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE client_id = $1 AND (id = $2 OR token = $2)"
        ));
        Ok(sqlx::query_as(sql)
            .bind(client_id)
            .bind(id_or_token)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The client's sessions, newest first.
    pub async fn sessions(
        &self,
        client_id: &str,
        page: PageRequest,
    ) -> StoreResult<Page<SessionRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE client_id = $1 \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
        ));
        let count = "SELECT COUNT(*) FROM sessions WHERE client_id = $1";
        self.client_page(sql, count, client_id, page).await
    }

    /// Takes the session with `token` for one socket of process `process_id`: at most one
    /// claim ever succeeds, even with several processes on one database, because the claim is
    /// a single conditional update.
    pub async fn claim_session(
        &self,
        token: &str,
        now: Millis,
        process_id: &str,
    ) -> StoreResult<Claim> {
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE sessions SET opened_at = $1, process_id = $3 \
             WHERE token = $2 AND opened_at IS NULL AND status = 'active' AND expires_at > $1 \
             RETURNING {COLUMNS}"
        ));
        let claimed: Option<SessionRow> = sqlx::query_as(sql)
            .bind(now)
            .bind(token)
            .bind(process_id)
            .fetch_optional(self.pool())
            .await?;
        if let Some(session) = claimed {
            return Ok(Claim::Claimed(Box::new(session)));
        }
        let found: Option<(Millis, Option<Millis>, String)> =
            sqlx::query_as("SELECT expires_at, opened_at, status FROM sessions WHERE token = $1")
                .bind(token)
                .fetch_optional(self.pool())
                .await?;
        Ok(match found {
            None => Claim::Unknown,
            Some((expires_at, None, status)) if status == "active" && expires_at <= now => {
                sqlx::query(
                    "UPDATE sessions SET status = 'expired' WHERE token = $1 AND status = 'active' \
                     AND opened_at IS NULL",
                )
                .bind(token)
                .execute(self.pool())
                .await?;
                Claim::Expired
            }
            Some((_, _, status)) if status == "expired" => Claim::Expired,
            Some(_) => Claim::Used,
        })
    }

    /// Records how the client's session ended, if it is still open and held by
    /// `process_id`. False when it was not: a reaper had taken the process for dead and ended
    /// the session as `disconnected` first, and that outcome stands.
    pub async fn finish_session(
        &self,
        client_id: &str,
        id: &str,
        process_id: &str,
        result: &SessionResult,
    ) -> StoreResult<bool> {
        let finished = sqlx::query(
            "UPDATE sessions SET status = $1, completed_at = $2, frames_processed = $3, \
             liveness_verified = $4, liveness_score = $5, blinks_detected = $6, \
             motion_events = $7, outcome = $8 WHERE client_id = $9 AND id = $10 \
             AND status = 'active' AND process_id = $11",
        )
        .bind(result.status)
        .bind(result.completed_at)
        .bind(result.frames_processed)
        .bind(i64::from(result.liveness_verified))
        .bind(result.liveness_score)
        .bind(result.blinks_detected)
        .bind(result.motion_events)
        .bind(result.outcome.as_deref())
        .bind(client_id)
        .bind(id)
        .bind(process_id)
        .execute(self.pool())
        .await?;
        Ok(finished.rows_affected() == 1)
    }
}
