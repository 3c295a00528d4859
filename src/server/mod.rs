//! `face-service serve`: the seed's WebSocket protocol over axum, feeding one device worker
//! that batches frames from every session.

pub mod admission;
pub mod answers;
pub mod metrics;
pub mod protocol;
pub mod session;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::liveness::check::{LivenessRules, SessionKind};
use crate::liveness::events::TurnRules;
use crate::models::{FaceModels, ModelKind};
use crate::pipeline::face_mesh::FaceMeshOptions;
use crate::scheduler::queue::QueueLimits;
use crate::server::admission::{ActiveTokens, Admission};
use crate::server::metrics::Metrics;
use crate::server::protocol::close;
use crate::server::worker::WorkerHandle;

/// How the server runs. Every field is a flag and an environment variable; the doc comments
/// are the `--help` text.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (the seed's port).
    #[arg(long, env = "FACE_SERVICE_BIND", default_value = "0.0.0.0:8003")]
    pub bind: SocketAddr,
    /// Most frames in one device batch.
    #[arg(long, env = "FACE_SERVICE_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// On a GPU, cut the model inputs out of the frames with the crop shader (the frames'
    /// bytes are uploaded) instead of on the CPU (the crops are uploaded). Off until measured
    /// faster on a GPU: `benches/gpu.sh` times both.
    #[arg(long, env = "FACE_SERVICE_GPU_CROP")]
    pub gpu_crop: bool,
    /// On the CPU backend, device workers running frames side by side, each on one core
    /// (0: one per core). A GPU always has one.
    #[arg(long, env = "FACE_SERVICE_CPU_WORKERS", default_value_t = 0)]
    pub cpu_workers: usize,
    /// Longest a frame waits for others to fill its batch, in milliseconds.
    #[arg(long, env = "FACE_SERVICE_MAX_QUEUE_DELAY_MS", default_value_t = 5)]
    pub max_queue_delay_ms: u64,
    /// Frames waiting for the device across all sessions before new ones are refused (503).
    #[arg(long, env = "FACE_SERVICE_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// A frame not on the device this long after it arrived is answered 504, not run.
    #[arg(long, env = "FACE_SERVICE_FRAME_DEADLINE_MS", default_value_t = 2000)]
    pub frame_deadline_ms: u64,
    /// Largest encoded frame accepted, in bytes (413 above).
    #[arg(long, env = "FACE_SERVICE_MAX_FRAME_BYTES", default_value_t = 4 << 20)]
    pub max_frame_bytes: usize,
    /// Largest frame side in pixels, checked from the image header before decoding (413).
    #[arg(long, env = "FACE_SERVICE_MAX_FRAME_SIDE", default_value_t = crate::frame::DEFAULT_MAX_SIDE)]
    pub max_frame_side: u32,
    /// Frames per second one session may send (429 above), as the seed.
    #[arg(long, env = "FACE_SERVICE_MAX_FPS", default_value_t = 10.0)]
    pub max_fps: f32,
    /// Frames one session may send before it is closed with 4429, as the seed (0: no limit).
    #[arg(
        long,
        env = "FACE_SERVICE_MAX_FRAMES_PER_SESSION",
        default_value_t = 120
    )]
    pub max_frames_per_session: u64,
    /// Seconds without a message after which a session is closed.
    #[arg(long, env = "FACE_SERVICE_SESSION_TIMEOUT_SECS", default_value_t = 300)]
    pub session_timeout_secs: u64,
    /// Faces to track per session (the seed runs one).
    #[arg(long, env = "FACE_SERVICE_MAX_NUM_FACES", default_value_t = 1)]
    pub max_num_faces: usize,
    /// Any well-formed token starts a session (`true`, for development and load tests), or only
    /// tokens issued first (`false`; others are closed with 4404).
    #[arg(long, env = "FACE_SERVICE_OPEN_SESSIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub open_sessions: bool,
    /// Browser origins allowed to open a WebSocket, comma-separated (e.g.
    /// `https://app.example.com`); empty allows any. Clients that send no `Origin` header
    /// (non-browser clients) are always allowed: the check stops other sites' pages, not tools.
    #[arg(
        long,
        env = "FACE_SERVICE_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_origins: Vec<String>,
    /// The liveness check a session runs unless its client asks for the other with
    /// `?session_type=` on the WebSocket URL: `enrollment` (blink, open the mouth, turn left,
    /// turn right, hold still, in order) or `authentication` (blinks and motion in a time limit).
    #[arg(
        long,
        env = "FACE_SERVICE_SESSION_TYPE",
        value_enum,
        default_value = "enrollment"
    )]
    pub session_type: SessionKind,
    /// Seconds an authentication session has to show its blinks and motion, from its start
    /// (then `authentication_timeout` and close 4401).
    #[arg(
        long,
        env = "FACE_SERVICE_AUTHENTICATION_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub authentication_timeout_secs: u64,
    /// Blinks an authentication session must show.
    #[arg(long, env = "FACE_SERVICE_BLINKS_REQUIRED", default_value_t = 2)]
    pub blinks_required: usize,
    /// Yaw in degrees from which a head turn counts.
    #[arg(long, env = "FACE_SERVICE_TURN_DEGREES", default_value_t = TurnRules::default().turn_degrees)]
    pub turn_degrees: f32,
    /// Yaw in degrees within which the head is back at centre, ready for the next turn.
    #[arg(long, env = "FACE_SERVICE_CENTRE_DEGREES", default_value_t = TurnRules::default().centre_degrees)]
    pub centre_degrees: f32,
}

impl ServeConfig {
    /// The liveness check's rules: the defaults, with what the flags set.
    pub fn liveness_rules(&self) -> LivenessRules {
        let defaults = LivenessRules::default();
        LivenessRules {
            authentication_timeout: Duration::from_secs(self.authentication_timeout_secs),
            authentication_blinks: self.blinks_required,
            turns: TurnRules {
                turn_degrees: self.turn_degrees,
                centre_degrees: self.centre_degrees,
                ..defaults.turns
            },
            ..defaults
        }
    }

    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let allowed: Vec<&String> = self
            .allowed_origins
            .iter()
            .filter(|o| !o.is_empty())
            .collect();
        match origin {
            None => true,
            Some(origin) => allowed.is_empty() || allowed.iter().any(|a| a.as_str() == origin),
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServeConfig>,
    pub worker: WorkerHandle,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<Admission>,
    pub active_tokens: Arc<ActiveTokens>,
    pub device: String,
    /// Name of the landmark model in use (`landmarks`, or `landmarks_with_attention` when
    /// refining).
    pub landmark_model: String,
    pub next_session_id: Arc<AtomicU64>,
    pub shutdown: watch::Receiver<bool>,
}

/// A running server: where it listens, and how to stop it.
pub struct Running {
    pub address: SocketAddr,
    /// Tokens the server admits when sessions are not open to all.
    pub admission: Arc<Admission>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics: Arc<Metrics>,
}

impl Running {
    /// Stops accepting, tells open sessions `1001`, and waits for them to finish.
    pub async fn shut_down(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let served = self.task.await.expect("the server task does not panic");
        // axum's graceful shutdown does not wait for connections upgraded to WebSockets: wait
        // here for the sessions to answer what they took and close, each within its grace
        // period, or the process would exit under them and cut their sockets.
        let deadline =
            tokio::time::Instant::now() + session::SHUTDOWN_GRACE + Duration::from_secs(2);
        while self.metrics.open_sessions.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        served
    }
}

/// Binds, starts the device worker, and serves until `shut_down`.
pub async fn start(config: ServeConfig, models: FaceModels) -> std::io::Result<Running> {
    let device = models.device.backend.to_string();
    let landmark_model = models.landmarker.kind().description().name;
    // A GPU compiles kernels per batch shape: keep the shapes few and warm them up.
    let on_gpu = models.device.is_gpu();
    let metrics = Arc::new(Metrics::default());
    let workers = match (on_gpu, config.cpu_workers) {
        (true, _) => 1,
        (false, 0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        (false, n) => n,
    };
    tracing::info!(workers, "device workers");
    let worker = worker::spawn(
        models,
        workers,
        QueueLimits {
            max_batch: config.max_batch,
            max_delay: Duration::from_millis(config.max_queue_delay_ms),
            capacity: config.queue_capacity,
        },
        FaceMeshOptions {
            max_faces: config.max_num_faces,
            padded_batches_up_to: on_gpu.then_some(config.max_batch),
            crop_on_device: config.gpu_crop,
            ..FaceMeshOptions::default()
        },
        metrics.clone(),
    );
    let listener = TcpListener::bind(config.bind).await?;
    let address = listener.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    let admission = Arc::new(Admission::new(config.open_sessions));
    let state_metrics = metrics.clone();
    let state = AppState {
        config: Arc::new(config),
        worker,
        metrics,
        admission: admission.clone(),
        active_tokens: Arc::default(),
        device,
        landmark_model,
        next_session_id: Arc::default(),
        shutdown: shutdown.clone(),
    };
    let mut stopping = shutdown;
    let app = router(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%address, "listening");
    Ok(Running {
        address,
        admission,
        stop,
        task,
        metrics: state_metrics,
    })
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(demo_page))
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
    headers: axum::http::HeaderMap,
) -> Response {
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if !state.config.origin_allowed(origin) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let admitted = state.admission.admit(&token);
    upgrade
        .max_message_size(state.config.max_frame_bytes * 4 / 3 + 4096)
        .on_upgrade(move |mut socket| async move {
            if let Err(code) = admitted {
                let reason = match code {
                    close::MALFORMED_TOKEN => "malformed session token",
                    _ => "unknown session: create it first",
                };
                let frame = axum::extract::ws::CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = socket
                    .send(axum::extract::ws::Message::Close(Some(frame)))
                    .await;
                return;
            }
            let span = tracing::info_span!("session", token = %token);
            let kind = query.session_type.unwrap_or(state.config.session_type);
            session::run(socket, token, kind, state)
                .instrument(span)
                .await;
        })
}

/// The live demo: one self-contained page, compiled in, that streams the camera over the
/// seed protocol and draws what comes back.
async fn demo_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("demo/index.html"))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "status": "healthy", "device": state.device }))
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (batches, frames) = (metrics.batch_size.count(), metrics.batch_size.sum());
    Json(json!({
        "device": state.device,
        "models": ["detector", state.landmark_model],
        "refine_landmarks": state.landmark_model == ModelKind::LandmarksWithAttention.description().name,
        "open_sessions": load(&metrics.open_sessions),
        "queue_depth": load(&metrics.queue_depth),
        "batches_run": batches,
        "frames_run": frames as u64,
        "mean_batch_size": if batches > 0 { frames / batches as f64 } else { 0.0 },
        "largest_batch": load(&metrics.largest_batch),
        "frames_rejected_overload": metrics.refused(503),
        "frames_dropped_deadline": metrics.refused(504),
        "frames_abandoned": load(&metrics.frames_abandoned),
        "liveness_passed": load(&metrics.liveness_passed),
        "liveness_timed_out": load(&metrics.liveness_timed_out),
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
    } else if state.metrics.workers_warming.load(Ordering::Relaxed) > 0 {
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
