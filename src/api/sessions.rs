//! Sessions over REST: an enrollment or authentication session is created here, its token
//! opens the WebSocket once, and its status and outcome are read back here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::caller::Caller;
use super::errors::{ApiError, Body};
use super::pages::{PageQuery, Paginated};
use super::{ApiState, ErrorBody, RequestOrigin, iso, parse_document};
use crate::store::sessions::SessionRow;
use crate::tenants::credentials::new_session_token;

/// Frames an enrollment gathers unless its metadata asks for another number.
const DEFAULT_TARGET_SAMPLES: i64 = 5;
/// The most an enrollment may ask for: the seed's per-session frame budget.
const MAX_TARGET_SAMPLES: i64 = 120;
const MAX_REQUIRED_BLINKS: i64 = 10;
/// Frames an authentication must process before it may pass, unless its metadata asks for
/// another number: the seed's `min_frames_required`.
const DEFAULT_MIN_FRAMES_REQUIRED: i64 = 3;

/// Where the end user's camera is.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Webcam,
    Mobile,
    Api,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Webcam => "webcam",
            Channel::Mobile => "mobile",
            Channel::Api => "api",
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EnrollmentRequest {
    /// The user's `external_user_id`.
    user_id: String,
    #[serde(default)]
    session_type: Channel,
    /// `target_samples` (good frames to gather, 1 to 120), `challenges` (true: the challenge
    /// sequence instead of the seed's rule), `device_info`, `origin`, ...
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrollmentCreated {
    session_token: String,
    enrollment_id: String,
    status: &'static str,
    target_samples: i64,
    expires_at: String,
    websocket_url: String,
    message: &'static str,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AuthenticationRequest {
    /// With a user's `external_user_id`, a verification (is this that user?); without, an
    /// identification (which of the client's users is this?).
    user_id: Option<String>,
    #[serde(default)]
    session_type: Channel,
    /// Accepted for the seed's clients; every session here checks liveness.
    #[serde(default = "yes")]
    require_liveness: bool,
    /// `min_frames_required` (default 3), `required_blinks` (0 to 10; 0 leaves motion alone to
    /// show liveness), ...
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuthenticationCreated {
    session_token: String,
    status: &'static str,
    expires_at: String,
    session_type: &'static str,
    websocket_url: String,
    message: &'static str,
}

/// An integer setting in a session's metadata, within `range`, or the default.
fn metadata_number(
    metadata: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, ApiError> {
    match metadata.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "metadata.{key} must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// A boolean setting in a session's metadata, if given.
fn metadata_flag(metadata: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match metadata.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(ApiError::bad_request(format!(
            "metadata.{key} must be true or false"
        ))),
    }
}

/// The client's active user with this id, or the seed's 400.
async fn active_user(state: &ApiState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    let user = state.tenants.store().user(&caller.client.id, id).await?;
    match user {
        Some(user) if user.is_active != 0 => Ok(()),
        _ => Err(ApiError::bad_request("User not found or inactive")),
    }
}

/// A new session's row: its token, expiry and the caller's client.
fn new_session(
    state: &ApiState,
    caller: &Caller,
    kind: &str,
    user: Option<String>,
    channel: Channel,
    metadata: Map<String, Value>,
) -> SessionRow {
    let now = crate::store::now();
    SessionRow {
        client_id: caller.client.id.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        token: new_session_token(),
        kind: kind.to_owned(),
        external_user_id: user,
        enrollment_id: None,
        session_type: channel.name().to_owned(),
        status: "active".to_owned(),
        metadata: Value::Object(metadata).to_string(),
        required_blinks: None,
        created_at: now,
        expires_at: now + state.session_lifetime.as_millis() as i64,
        opened_at: None,
        completed_at: None,
        frames_processed: None,
        liveness_verified: None,
        liveness_score: None,
        blinks_detected: None,
        motion_events: None,
        process_id: None,
        outcome: None,
    }
}

async fn store_session(
    state: &ApiState,
    caller: &Caller,
    session: &SessionRow,
    target_samples: Option<i64>,
) -> Result<(), ApiError> {
    state
        .tenants
        .store()
        .insert_session(session, target_samples)
        .await?;
    state
        .tenants
        .audit(
            Some(&caller.client.id),
            "session_created",
            true,
            &format!("{} session", session.kind),
            Some(caller.remote_addr.clone()),
        )
        .await?;
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/auth/enrollment/",
    tag = "sessions",
    request_body = EnrollmentRequest,
    responses((status = 201, body = EnrollmentCreated), (status = 400, body = ErrorBody))
)]
pub async fn create_enrollment(
    State(state): State<ApiState>,
    caller: Caller,
    origin: RequestOrigin,
    Body(request): Body<EnrollmentRequest>,
) -> Result<(StatusCode, axum::Json<EnrollmentCreated>), ApiError> {
    let mut metadata = request.metadata.unwrap_or_default();
    let target_samples = metadata_number(&metadata, "target_samples", 1..=MAX_TARGET_SAMPLES)?
        .unwrap_or(DEFAULT_TARGET_SAMPLES);
    metadata_flag(&metadata, "challenges")?;
    // The socket reads the session's rules from its metadata.
    metadata.insert("target_samples".into(), target_samples.into());
    active_user(&state, &caller, &request.user_id).await?;
    let enrollment_id = uuid::Uuid::new_v4().to_string();
    let session = SessionRow {
        enrollment_id: Some(enrollment_id.clone()),
        ..new_session(
            &state,
            &caller,
            "enrollment",
            Some(request.user_id),
            request.session_type,
            metadata,
        )
    };
    store_session(&state, &caller, &session, Some(target_samples)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(EnrollmentCreated {
            websocket_url: origin.websocket_url(&session.token),
            session_token: session.token,
            enrollment_id,
            status: "pending",
            target_samples,
            expires_at: iso(session.expires_at),
            message: "Enrollment session created: open websocket_url and stream frames",
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/auth/authentication/",
    tag = "sessions",
    request_body = AuthenticationRequest,
    responses((status = 201, body = AuthenticationCreated), (status = 400, body = ErrorBody))
)]
pub async fn create_authentication(
    State(state): State<ApiState>,
    caller: Caller,
    origin: RequestOrigin,
    Body(request): Body<AuthenticationRequest>,
) -> Result<(StatusCode, axum::Json<AuthenticationCreated>), ApiError> {
    let mut metadata = request.metadata.unwrap_or_default();
    let required_blinks = metadata_number(&metadata, "required_blinks", 0..=MAX_REQUIRED_BLINKS)?;
    let min_frames = metadata_number(&metadata, "min_frames_required", 1..=MAX_TARGET_SAMPLES)?
        .unwrap_or(DEFAULT_MIN_FRAMES_REQUIRED);
    metadata.insert("min_frames_required".into(), min_frames.into());
    metadata.insert("require_liveness".into(), request.require_liveness.into());
    if let Some(user) = &request.user_id {
        active_user(&state, &caller, user).await?;
    }
    let session = SessionRow {
        required_blinks,
        ..new_session(
            &state,
            &caller,
            "authentication",
            request.user_id,
            request.session_type,
            metadata,
        )
    };
    store_session(&state, &caller, &session, None).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AuthenticationCreated {
            websocket_url: origin.websocket_url(&session.token),
            session_token: session.token,
            status: "active",
            expires_at: iso(session.expires_at),
            session_type: request.session_type.name(),
            message: "Authentication session created: open websocket_url and stream frames",
        }),
    ))
}

/// What the socket measured, once the session is over (an extension).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionOutcome {
    frames_processed: i64,
    liveness_verified: bool,
    liveness_score: f64,
    blinks_detected: i64,
    motion_events: i64,
    /// From the socket's opening to its close.
    duration_ms: Option<i64>,
    /// The identity step's outcome: for an enrollment `enrolled`, with `user_id`,
    /// `enrollment_id`, `templates_stored`, `quality_score`, or `error_code`, `message`,
    /// `similarity_score` and `conflicting_user` (the other user a duplicate face belongs
    /// to); for an authentication `authenticated`, `user_id` (the matched user), `confidence`
    /// (cosine similarity of SFace templates, -1 to 1; a match from 0.363 by default), or
    /// `reason` and `message`. Null when the session ended before its identity step.
    #[schema(value_type = Option<Object>)]
    outcome: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    /// The session's id; its token finds it too.
    id: String,
    session_token: String,
    /// `enrollment` or `authentication`.
    kind: String,
    /// The user's `external_user_id`, or null for an identification.
    user_id: Option<String>,
    /// `active`, `completed`, `failed`, `timeout`, `disconnected` or `expired`.
    status: String,
    session_type: String,
    created_at: String,
    expires_at: String,
    opened_at: Option<String>,
    completed_at: Option<String>,
    #[schema(value_type = Object)]
    metadata: Value,
    enrollment_id: Option<String>,
    /// The enrollment's own status, on the detail and status answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    enrollment_status: Option<String>,
    result: Option<SessionOutcome>,
}

impl From<SessionRow> for SessionBody {
    fn from(row: SessionRow) -> SessionBody {
        // A session nobody opened before its expiry is expired, whether or not a socket tried.
        let status = if row.status == "active"
            && row.opened_at.is_none()
            && row.expires_at <= crate::store::now()
        {
            "expired".to_owned()
        } else {
            row.status
        };
        let result = row.completed_at.map(|completed_at| SessionOutcome {
            frames_processed: row.frames_processed.unwrap_or_default(),
            liveness_verified: row.liveness_verified.unwrap_or_default() != 0,
            liveness_score: row.liveness_score.unwrap_or_default(),
            blinks_detected: row.blinks_detected.unwrap_or_default(),
            motion_events: row.motion_events.unwrap_or_default(),
            duration_ms: row.opened_at.map(|opened| completed_at - opened),
            outcome: row.outcome.as_deref().map(parse_document),
        });
        SessionBody {
            id: row.id,
            session_token: row.token,
            kind: row.kind,
            user_id: row.external_user_id,
            status,
            session_type: row.session_type,
            created_at: iso(row.created_at),
            expires_at: iso(row.expires_at),
            opened_at: row.opened_at.map(iso),
            completed_at: row.completed_at.map(iso),
            metadata: parse_document(&row.metadata),
            enrollment_id: row.enrollment_id,
            enrollment_status: None,
            result,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/auth/sessions/",
    tag = "sessions",
    params(("page" = Option<i64>, Query, description = "1-based, 20 sessions a page")),
    responses((status = 200, body = Paginated<SessionBody>), (status = 404, body = ErrorBody))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    page: PageQuery,
) -> Result<axum::Json<Paginated<SessionBody>>, ApiError> {
    let sessions = state
        .tenants
        .store()
        .sessions(&caller.client.id, page.request())
        .await?;
    Ok(axum::Json(page.answer(sessions, SessionBody::from)?))
}

async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<SessionBody, ApiError> {
    let store = state.tenants.store();
    let row = store
        .session(&caller.client.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Session"))?;
    let enrollment_status = match &row.enrollment_id {
        Some(enrollment) => {
            store
                .enrollment_status(&caller.client.id, enrollment)
                .await?
        }
        None => None,
    };
    Ok(SessionBody {
        enrollment_status,
        ..row.into()
    })
}

#[utoipa::path(
    get,
    path = "/api/auth/sessions/{session}/",
    tag = "sessions",
    params(("session" = String, Path, description = "the session's id or its token")),
    responses((status = 200, body = SessionBody), (status = 404, body = ErrorBody))
)]
pub async fn read(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<SessionBody>, ApiError> {
    Ok(axum::Json(find(&state, &caller, &id).await?))
}

/// The seed's status answer: the session's state, without its outcome.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionStatus {
    session_token: String,
    status: String,
    session_type: String,
    created_at: String,
    expires_at: String,
    completed_at: Option<String>,
    #[schema(value_type = Object)]
    metadata: Value,
    enrollment_status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/auth/sessions/{session}/status/",
    tag = "sessions",
    params(("session" = String, Path, description = "the session's id or its token")),
    responses((status = 200, body = SessionStatus), (status = 404, body = ErrorBody))
)]
pub async fn status(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<SessionStatus>, ApiError> {
    let session = find(&state, &caller, &id).await?;
    Ok(axum::Json(SessionStatus {
        session_token: session.session_token,
        status: session.status,
        session_type: session.session_type,
        created_at: session.created_at,
        expires_at: session.expires_at,
        completed_at: session.completed_at,
        metadata: session.metadata,
        enrollment_status: session.enrollment_status,
    }))
}
