//! `face-service serve`: the seed's protocol over axum, feeding the engine. The server only
//! transports: routes, the session loop, admission, answers and metrics; what a frame means is
//! the engine's, and the one mapping of both to wire codes is `codes`.

pub mod admission;
pub mod answers;
pub mod codes;
pub mod config;
mod demo;
pub mod forwarded;
pub mod listener;
pub mod metrics;
pub mod protocol;
pub mod registry;
mod routes;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::identity::Identity;
use crate::models::FaceModels;
use crate::server::admission::{ActiveTokens, Admission};
use crate::server::metrics::Metrics;
use crate::server::registry::Registry;
use crate::tenants::Tenants;
use crate::tenants::sealing::Sealer;
use crate::webhooks::Webhooks;

pub use config::ServeConfig;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServeConfig>,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<Admission>,
    pub active_tokens: Arc<ActiveTokens>,
    pub device: String,
    /// Name of the landmark model in use (`landmarks`, or `landmarks_with_attention` when
    /// refining).
    pub landmark_model: String,
    pub next_session_id: Arc<AtomicU64>,
    pub shutdown: watch::Receiver<bool>,
    pub registry: Arc<Registry>,
    /// Enrollment and authentication after liveness, for issued sessions.
    pub identity: Arc<Identity>,
    /// The demo page's tenant backend, in open mode.
    pub demo: Option<Arc<demo::DemoBackend>>,
    /// Sockets upgraded and not yet done with, their outcome stored included: what the
    /// shutdown waits for before it marks the process stopped.
    pub sessions_in_progress: Arc<AtomicU64>,
}

/// A running server: where it listens, and how to stop it.
pub struct Running {
    pub address: SocketAddr,
    /// The tenants and their store the server serves.
    pub tenants: Tenants,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    sessions_in_progress: Arc<AtomicU64>,
    registry: Arc<Registry>,
    heartbeat: tokio::task::JoinHandle<()>,
    gallery_sweep: tokio::task::JoinHandle<()>,
    deliverer: tokio::task::JoinHandle<()>,
}

impl Running {
    /// This process's id in the store's registry of processes.
    pub fn process_id(&self) -> &str {
        self.registry.id()
    }

    /// Stops accepting, tells open sessions `1001`, waits for them to finish, and marks the
    /// process stopped in the store.
    pub async fn shut_down(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.expect("the server task does not panic");
        // The listener's graceful shutdown does not wait for connections upgraded to WebSockets: wait
        // here for the sessions to answer what they took and close, each within its grace
        // period, or the process would exit under them and cut their sockets.
        let deadline = tokio::time::Instant::now() + SESSION_DRAIN;
        while self.sessions_in_progress.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.heartbeat.abort();
        self.gallery_sweep.abort();
        // It stops at the signal, once the attempt under way is recorded.
        let _ = self.deliverer.await;
        self.registry.deregister().await;
        Ok(())
    }
}

/// How long sessions have, once the listener has stopped, to answer what they took and close.
const SESSION_DRAIN: Duration = Duration::from_secs(session::SHUTDOWN_GRACE.as_secs() + 2);

/// The longest `shut_down` takes: HTTP requests finishing, then sessions draining.
pub const LONGEST_DRAIN: Duration =
    Duration::from_secs(listener::HTTP_DRAIN.as_secs() + SESSION_DRAIN.as_secs());

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Opens the store, binds, starts the engine, and serves until `shut_down`. `models` must
/// hold the recognition and anti-spoofing models (`FaceModels::with_identity_models`): issued
/// sessions need them.
pub async fn start(config: ServeConfig, models: FaceModels) -> Result<Running, StartError> {
    if models.recognizer.is_none() || models.anti_spoofing.is_none() {
        return Err(
            "the server needs the recognition and anti-spoofing models: \
             FaceModels::with_identity_models"
                .into(),
        );
    }
    let tenants = Tenants::open(&config.store).await?;
    let webhooks = Arc::new(Webhooks::new(
        tenants.store().clone(),
        Sealer::new(&tenants.derived_key("webhook secrets")),
        &config.webhooks,
    ));
    let identity = Arc::new(Identity::new(
        tenants.clone(),
        webhooks.clone(),
        &config.identity,
    )?);
    let gallery_sweep = identity.galleries().spawn_sweep();

    let open = config.access.open_sessions;
    tracing::info!(
        store = ?tenants.store().engine(),
        sessions = if open { "open: any well-formed token starts a liveness session" }
            else { "issued only: a WebSocket needs a session created over the REST API" },
        "store ready"
    );
    let device = models.device.backend.to_string();
    let landmark_model = models.landmarker.kind().description().name;
    let engine = Engine::start(models, &config.engine);
    let metrics = Arc::new(Metrics::new(engine.metrics.clone()));
    let listener = TcpListener::bind(config.bind).await?;
    let address = listener.local_addr()?;
    let registry = Registry::register(
        tenants.store().clone(),
        &config.registry,
        address,
        metrics.clone(),
    )
    .await?;
    let heartbeat = registry.spawn_heartbeat();
    let demo = match open {
        true => Some(Arc::new(demo::DemoBackend::start(&tenants, address).await?)),
        false => None,
    };
    let (stop, shutdown) = watch::channel(false);
    let deliverer = webhooks.spawn_deliverer(shutdown.clone());
    let admission = Arc::new(Admission::new(open, tenants.clone(), registry.clone()));
    let next_session_id = Arc::new(AtomicU64::new(0));
    let api = crate::api::ApiState {
        tenants: tenants.clone(),
        session_lifetime: Duration::from_secs(config.access.session_lifetime_secs),
        engine: engine.clone(),
        identity: identity.clone(),
        webhooks,
        max_photo_bytes: config.limits.max_frame_bytes,
        next_job: next_session_id.clone(),
    };
    let state = AppState {
        config: Arc::new(config),
        engine,
        metrics: metrics.clone(),
        admission,
        active_tokens: Arc::default(),
        device,
        landmark_model,
        next_session_id,
        shutdown: shutdown.clone(),
        registry: registry.clone(),
        identity,
        demo,
        sessions_in_progress: Arc::default(),
    };
    let sessions_in_progress = state.sessions_in_progress.clone();
    let stopping = shutdown;
    let connections = state.config.connections.clone();
    let proxies = state.config.proxies.clone();
    let app = routes::router(state)
        .merge(crate::api::router(api))
        .fallback(crate::api::errors::not_found);
    let task = tokio::spawn(async move {
        listener::serve(listener, app, &connections, proxies, stopping).await;
    });
    tracing::info!(%address, "listening");
    Ok(Running {
        address,
        tenants,
        stop,
        task,
        sessions_in_progress,
        registry,
        heartbeat,
        gallery_sweep,
        deliverer,
    })
}
