//! The server's routes: the seed's WebSocket, the health, readiness and status endpoints,
//! Prometheus metrics, and the demo page.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::json;
use tracing::Instrument;

use crate::identity::IdentityRequest;
use crate::liveness::check::SessionKind;
use crate::models::ModelKind;
use crate::server::AppState;
use crate::server::admission::Admitted;
use crate::server::codes::RefusalKind;
use crate::server::demo;
use crate::server::forwarded::ClientOrigin;
use crate::server::session::{self, SessionIdentity, SessionSetup};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(demo::page))
        .route("/demo/enroll/", post(demo::enroll))
        .route("/demo/sign-in/", post(demo::sign_in))
        .route("/ws/auth/process-image/{token}/", get(websocket))
        .route("/ws/auth/process-image/{token}", get(websocket))
        .route("/api/health/", get(health))
        .route("/api/status/", get(status))
        .route("/api/ready/", get(ready))
        .route("/metrics", get(prometheus))
        .with_state(state)
}

/// What a client may ask for on the WebSocket URL (an extension).
#[derive(serde::Deserialize)]
struct SessionQuery {
    session_type: Option<SessionKind>,
}

async fn websocket(
    upgrade: WebSocketUpgrade,
    Path(token): Path<String>,
    Query(query): Query<SessionQuery>,
    State(state): State<AppState>,
    client: ClientOrigin,
    headers: axum::http::HeaderMap,
) -> Response {
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if !state.config.access.origin_allowed(origin) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let admitted = state.admission.admit(&token).await;
    let limits = &state.config.limits;
    // The largest message a frame can arrive in: base64 of the largest frame, in JSON. Past it
    // the WebSocket library refuses to buffer more, and the session closes with 1009.
    let max_message = limits.max_frame_bytes * 4 / 3 + 4096;
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let _in_progress = InProgress::new(&state.sessions_in_progress);
            let (mut sink, mut stream) = socket.split();
            let admitted = match admitted {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    session::close(&mut sink, &mut stream, refusal).await;
                    return;
                }
            };
            let span = tracing::info_span!("session", token = %token, client = %client.address);
            let (claim, replaced) = state.active_tokens.claim(&token);
            let config = &state.config;
            let mut rules = config.liveness.rules();
            let kind = match &admitted {
                Admitted::Issued(issued) => {
                    if let Some(blinks) = issued.required_blinks {
                        rules.authentication_blinks = blinks;
                    }
                    rules.min_frames = issued.min_frames;
                    rules.enrollment_challenges = issued
                        .challenges
                        .unwrap_or(state.identity.enrollment_challenges());
                    issued.kind
                }
                Admitted::Open => query.session_type.unwrap_or(config.liveness.session_type),
            };
            let identity = match &admitted {
                Admitted::Issued(issued) => Some(SessionIdentity {
                    service: &state.identity,
                    request: IdentityRequest {
                        client_id: issued.client_id.clone(),
                        session_token: token.clone(),
                        purpose: issued.purpose.clone(),
                    },
                }),
                Admitted::Open => None,
            };
            let setup = SessionSetup {
                token: token.clone(),
                id: state.next_session_id.fetch_add(1, Ordering::Relaxed),
                kind,
                limits: &config.limits,
                rules,
                engine: &state.engine,
                metrics: &state.metrics,
                shutdown: state.shutdown.clone(),
                replaced,
                identity,
            };
            let end = session::run(sink, stream, setup).instrument(span).await;
            state.active_tokens.release(&token, claim);
            if let Admitted::Issued(issued) = &admitted {
                state.admission.record_end(issued, &end).await;
            }
        })
}

/// Counts a socket as in progress while it lives.
struct InProgress(Arc<AtomicU64>);

impl InProgress {
    fn new(count: &Arc<AtomicU64>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "status": "healthy", "device": state.device }))
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    let engine = &metrics.engine;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (batches, frames) = (engine.batch_size.count(), engine.batch_size.sum());
    Json(json!({
        "device": state.device,
        "process_id": state.registry.id(),
        "models": ["detector", state.landmark_model],
        "refine_landmarks": state.landmark_model == ModelKind::LandmarksWithAttention.description().name,
        "open_sessions": load(&metrics.open_sessions),
        "queue_depth": load(&engine.queue_depth),
        "batches_run": batches,
        "frames_run": frames as u64,
        "mean_batch_size": if batches > 0 { frames / batches as f64 } else { 0.0 },
        "largest_batch": load(&engine.largest_batch),
        "frames_rejected_overload": metrics.refused(RefusalKind::Overloaded),
        "frames_dropped_deadline": metrics.refused(RefusalKind::DeadlineMissed),
        "frames_abandoned": load(&engine.frames_abandoned),
        "liveness_passed": load(&metrics.liveness_passed),
        "liveness_timed_out": load(&metrics.liveness_timed_out),
        "templates_held": state.identity.galleries().templates_held(),
    }))
}

/// 200 while serving. 503 while the device workers warm their kernels up (a GPU compiles them
/// per batch shape, which can take minutes, and the listener opens before), and once shutting
/// down, so that a load balancer sends sessions only to a server that can answer them promptly.
async fn ready(State(state): State<AppState>) -> Response {
    let unready = |reason| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response()
    };
    if *state.shutdown.borrow() {
        unready("draining")
    } else if !state.registry.in_touch() {
        unready("the store is unreachable")
    } else if state.metrics.engine.workers_warming.load(Ordering::Relaxed) > 0 {
        unready("warming up")
    } else {
        Json(json!({ "ready": true })).into_response()
    }
}

async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
