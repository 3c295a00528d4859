//! This process's entry among the processes sharing the store: registered at start, kept
//! alive by a heartbeat, marked stopped after the drain. Each beat also reaps processes whose
//! heartbeat went stale (killed, frozen, cut off from the database), ending their open sessions
//! as `disconnected` within `--process-timeout-secs` plus one beat of their death.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::server::metrics::Metrics;
use crate::store::processes::{Heartbeat, ProcessRow};
use crate::store::{Millis, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Cluster")]
pub struct RegistryConfig {
    /// Seconds between this process's heartbeats in the store. Each beat also looks for
    /// processes on the same database whose heartbeats stopped.
    #[arg(long, env = "FACE_SERVICE_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// Seconds without a heartbeat after which a process counts as dead, and the first live
    /// process to notice marks its open sessions `disconnected`; at least twice
    /// `--heartbeat-secs`. A process that cannot reach the store for half this long reports
    /// itself not ready.
    #[arg(long, env = "FACE_SERVICE_PROCESS_TIMEOUT_SECS", default_value_t = 20)]
    pub process_timeout_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 5,
            process_timeout_secs: 20,
        }
    }
}

/// This process, as registered.
#[derive(Debug)]
pub struct Registry {
    id: String,
    store: Store,
    beat: Duration,
    timeout: Duration,
    /// When the last heartbeat reached the store.
    last_beat: AtomicI64,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// Registers this process, listening on `address`.
    pub async fn register(
        store: Store,
        config: &RegistryConfig,
        address: std::net::SocketAddr,
        metrics: Arc<Metrics>,
    ) -> StoreResult<Arc<Registry>> {
        if config.heartbeat_secs == 0 || config.process_timeout_secs < 2 * config.heartbeat_secs {
            return Err(StoreError::Config(format!(
                "--process-timeout-secs ({}) must be at least twice --heartbeat-secs ({}), \
                 which must be positive: a process must miss two heartbeats to count as dead",
                config.process_timeout_secs, config.heartbeat_secs
            )));
        }
        let now = crate::store::now();
        let process = ProcessRow {
            id: uuid::Uuid::new_v4().to_string(),
            host: host_name(),
            address: address.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: now,
            heartbeat_at: now,
            stopped_at: None,
            stop_reason: None,
        };
        store.register_process(&process).await?;
        tracing::info!(process = %process.id, host = %process.host, "registered in the store");
        Ok(Arc::new(Registry {
            id: process.id,
            store,
            beat: Duration::from_secs(config.heartbeat_secs),
            timeout: Duration::from_secs(config.process_timeout_secs),
            last_beat: AtomicI64::new(now),
            metrics,
        }))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the last heartbeat reached the store within half the process timeout: past
    /// that, other processes may soon take this one for dead.
    pub fn in_touch(&self) -> bool {
        let silent = crate::store::now() - self.last_beat.load(Ordering::Relaxed);
        silent < millis(self.timeout) / 2
    }

    /// Beats and reaps until the task is aborted: after the drain, not at the shutdown
    /// signal, or a process draining for longer than the timeout would be taken for dead.
    pub fn spawn_heartbeat(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(registry.beat);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                registry.beat_and_reap().await;
            }
        })
    }

    async fn beat_and_reap(&self) {
        let now = crate::store::now();
        match self.store.heartbeat(&self.id, now).await {
            Ok(beat) => {
                self.last_beat.store(now, Ordering::Relaxed);
                if beat == Heartbeat::TakenForDead {
                    tracing::error!(
                        process = %self.id,
                        "other processes took this one for dead (its heartbeats did not reach \
                         the store in time) and ended its open sessions; registered again"
                    );
                }
            }
            Err(error) => {
                self.metrics
                    .heartbeats_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "the heartbeat did not reach the store");
                return;
            }
        }
        match self
            .store
            .reap_processes(now, now - millis(self.timeout))
            .await
        {
            Ok(reaped) => {
                for dead in reaped {
                    self.metrics
                        .sessions_reaped
                        .fetch_add(dead.sessions, Ordering::Relaxed);
                    tracing::warn!(
                        process = %dead.process_id,
                        sessions = dead.sessions,
                        "a process stopped beating: its open sessions are now disconnected"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "looking for dead processes"),
        }
    }

    /// Marks this process stopped, once its sessions have drained.
    pub async fn deregister(&self) {
        match self.store.stop_process(&self.id, crate::store::now()).await {
            Ok(0) => tracing::info!(process = %self.id, "deregistered from the store"),
            Ok(left) => tracing::warn!(
                process = %self.id,
                sessions = left,
                "deregistered; sessions still open after the drain are now disconnected"
            ),
            Err(error) => tracing::error!(%error, "deregistering from the store"),
        }
    }
}

fn millis(duration: Duration) -> Millis {
    duration.as_millis() as Millis
}

/// The machine's name, for operators reading the registry.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
