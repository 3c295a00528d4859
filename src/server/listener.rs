//! The accept loop under the router. Every connection costs a file descriptor, and a process
//! that runs out of them cannot open its store, read a file or accept anyone: so connections
//! are capped below the open-file limit, leaving the rest to the server's own files.
//!
//! A connection that has not sent a whole request head is "pending": it costs a descriptor and
//! gives nothing. Slow-header attacks (slowloris) hold many of them, so each pending connection
//! has a deadline for its head, their number is capped, and when either cap is reached (or the
//! process runs out of descriptors all the same) the oldest pending one is dropped to make
//! room. A real client's request then gets through, even under such an attack: a new session,
//! or a health check. Sessions already running are never dropped for newcomers.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tower::ServiceExt;

use crate::server::forwarded::TrustedProxies;

/// Limits on connections, open and pending. Flags of `serve`.
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
    /// Open connections at once, HTTP and WebSocket; past it new ones wait in the kernel's
    /// backlog. Default: the open-file limit (raised to its hard limit at start) less
    /// the 64 descriptors kept for the store, the models and the logs.
    #[arg(long, env = "FACE_SERVICE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
}

/// How long HTTP requests in progress have to finish once the server stops.
pub const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// Descriptors kept out of the connection cap for everything else the process opens.
const RESERVED_FILES: u64 = 64;

impl ConnectionLimits {
    /// The connection cap: the flag, or what the open-file limit leaves.
    fn cap(&self, open_file_limit: u64) -> usize {
        let cap = self.max_connections.unwrap_or_else(|| {
            usize::try_from(open_file_limit.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX)
        });
        cap.clamp(1, Semaphore::MAX_PERMITS)
    }
}

/// Raises the soft open-file limit to the hard one (a server that holds a socket per client
/// wants them all; the soft default is often 1,024) and returns the limit in force.
fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return u64::MAX;
    };
    if limit.maximum != Some(current) {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum.unwrap_or(u64::MAX),
            Err(error) => tracing::warn!(%error, current, "raising the open-file limit"),
        }
    }
    current
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            max_pending_connections: 256,
            max_connections: None,
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

/// A connection's socket holding its place under the cap, which it gives back when the socket
/// closes: whether hyper owns it last or, after an upgrade, the WebSocket session.
struct Counted {
    tcp: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets HTTP requests in progress
/// finish (upgraded WebSockets drain on their own, see `session`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionLimits,
    proxies: TrustedProxies,
    mut stop: watch::Receiver<bool>,
) {
    let proxies = Arc::new(proxies);
    let pending = Arc::new(Pending::default());
    let mut connections = tokio::task::JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs));
    let open_file_limit = raise_open_file_limit();
    let cap = limits.cap(open_file_limit);
    tracing::info!(connections = cap, open_file_limit, "connections capped");
    let places = Arc::new(Semaphore::new(cap));
    let mut next_id = 0u64;
    loop {
        // A place under the cap before accepting. When all are taken the oldest pending
        // connection gives its place up; with none pending, wait for a connection to end while
        // new ones queue in the kernel's backlog.
        let place = match places.clone().try_acquire_owned() {
            Ok(place) => place,
            Err(_) => {
                pending.drop_oldest();
                tokio::select! {
                    place = places.clone().acquire_owned() => place.expect("never closed"),
                    _ = stop.wait_for(|stop| *stop) => break,
                }
            }
        };
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
            let (app, pending, proxies) = (app.clone(), pending.clone(), proxies.clone());
            // Each request learns its peer's address and its client's origin; the first takes
            // the connection off the pending list.
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                pending.remove(id);
                let origin = proxies.resolve(remote.ip(), request.headers());
                request.extensions_mut().insert(origin);
                request.extensions_mut().insert(ConnectInfo(remote));
                app.clone().oneshot(request)
            })
        };
        let counted = Counted { tcp, _place: place };
        let connection = http
            .serve_connection(TokioIo::new(counted), service)
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
    let _ = tokio::time::timeout(HTTP_DRAIN, drained).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_servers_own_files() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.cap(1024), 960);
        assert_eq!(limits.cap(128), 64);
        // Never zero, or nothing would be accepted at all.
        assert_eq!(limits.cap(10), 1);
        let flagged = ConnectionLimits {
            max_connections: Some(5000),
            ..limits
        };
        assert_eq!(flagged.cap(1024), 5000);
    }
}
