//! `face-service serve`: the server, until SIGTERM or Ctrl-C.

use crate::cli::{AnyError, ModelArgs};
use crate::server::{self, ServeConfig};

pub fn run(config: ServeConfig, models: &ModelArgs) -> Result<(), AnyError> {
    let models = models.load()?.with_identity_models(&models.options())?;
    // Frames are decoded on tokio's blocking pool. Decoding is CPU-bound, so more threads than
    // twice the cores only add memory under a flood of frames; tokio's default would allow 512.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(2 * cores)
        .build()?;
    runtime.block_on(async {
        let running = server::start(config, models)
            .await
            .map_err(|error| -> AnyError { error })?;
        shutdown_signal().await;
        tracing::info!("shutting down: closing sessions with 1001");
        running.shut_down().await?;
        Ok(())
    })
}

/// SIGTERM (systemd, Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
