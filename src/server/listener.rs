//! The accept loop under the router. A connection that has not sent a whole request head is
//! "pending": it costs a file descriptor and gives nothing. Slow-header attacks (slowloris)
//! hold many of them, so each pending connection has a deadline for its head, their number is
//! capped, and when the cap is reached or the process runs out of file descriptors the oldest
//! pending one is dropped to make room. A real client's request then gets through, even under
//! such an attack: a new session, or a health check.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

/// Limits on connections that have not yet sent a request. Flags of `serve`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionLimits {
    /// Seconds a connection has to send its request head; then it is closed.
    #[arg(long, env = "FACE_SERVICE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Connections that have not sent a whole request head; past it the oldest is closed.
    #[arg(
        long,
        env = "FACE_SERVICE_MAX_PENDING_CONNECTIONS",
        default_value_t = 256
    )]
    pub max_pending_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            max_pending_connections: 256,
        }
    }
}

/// The pending connections, oldest first, each with the sender that drops it.
#[derive(Default)]
struct Pending {
    by_age: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
}

impl Pending {
    fn add(&self, id: u64, drop_it: oneshot::Sender<()>) -> usize {
        let mut by_age = self.by_age.lock().expect("never poisoned");
        by_age.insert(id, drop_it);
        by_age.len()
    }

    /// The connection sent its head (or ended): it is no longer pending.
    fn remove(&self, id: u64) {
        self.by_age.lock().expect("never poisoned").remove(&id);
    }

    /// Drops the oldest pending connection; false when there is none.
    fn drop_oldest(&self) -> bool {
        let oldest = self.by_age.lock().expect("never poisoned").pop_first();
        match oldest {
            Some((_, drop_it)) => {
                let _ = drop_it.send(());
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets HTTP requests in progress
/// finish (upgraded WebSockets drain on their own, see `session`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let pending = Arc::new(Pending::default());
    let mut connections = tokio::task::JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs));
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors (or another transient failure): free one by
                // dropping the oldest pending connection, or wait a moment for one.
                if pending.drop_oldest() {
                    // Let the dropped connection's task close its descriptor before retrying.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let (drop_it, dropped) = oneshot::channel();
        if pending.add(id, drop_it) > limits.max_pending_connections {
            pending.drop_oldest();
        }
        let service = {
            let (app, pending) = (app.clone(), pending.clone());
            // Each request learns its peer's address; the first takes the connection off the
            // pending list.
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                pending.remove(id);
                request.extensions_mut().insert(ConnectInfo(remote));
                app.clone().oneshot(request)
            })
        };
        let connection = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let pending = pending.clone();
        let mut stopping = stop.clone();
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                Ok(()) = dropped => {}
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    // Finish the request in progress, take no other.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            pending.remove(id);
        });
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), drained).await;
}
