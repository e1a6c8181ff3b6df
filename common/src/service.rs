//! The tail of every service binary's `main` ([`run`]): install the crypto
//! provider, start a multi-threaded runtime and telemetry, bind the
//! listeners, cancel on SIGINT/SIGTERM and run the service; returns the
//! process exit code (1 when telemetry, binding or the service fails, with the
//! error on stderr). And the tail of a gRPC service's own `run`
//! ([`serve_until_shutdown`]): serve until shutdown or failure, then drain.

use std::fmt::Display;
use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::telemetry::{LogConfig, TracingConfig};

/// Runs a service; see the module doc.
pub fn run<L, B, R, E>(
    name: &'static str,
    log: &LogConfig,
    tracing_config: &TracingConfig,
    bind: impl FnOnce() -> B,
    serve: impl FnOnce(L, CancellationToken) -> R,
) -> i32
where
    B: Future<Output = std::io::Result<L>>,
    R: Future<Output = Result<(), E>>,
    E: Display,
{
    crate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let _telemetry = match crate::telemetry::init(name, log, tracing_config) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{name}: cannot start telemetry: {e}");
                return 1;
            }
        };
        let listeners = match bind().await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: {e}");
                return 1;
            }
        };
        let shutdown = CancellationToken::new();
        crate::shutdown::cancel_on_signal(shutdown.clone());
        match serve(listeners, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{name}: {e:#}");
                1
            }
        }
    })
}

/// The serving tail of a gRPC service's `run`: waits until `shutdown` is
/// cancelled or the `server` task stops on its own (then cancels `shutdown`),
/// then drains: `/healthz` turns 503, the `tracker`'s tasks and the server's
/// graceful stop get `drain_timeout` before the server is aborted. Returns why
/// the server stopped when it did so on its own.
pub async fn serve_until_shutdown<E: Display>(
    name: &str,
    mut server: tokio::task::JoinHandle<Result<(), E>>,
    shutdown: &CancellationToken,
    health: &crate::telemetry::Health,
    tracker: &tokio_util::task::TaskTracker,
    drain_timeout: std::time::Duration,
) -> Result<(), String> {
    let mut failure = None;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        result = &mut server => {
            failure = Some(match result {
                Ok(Ok(())) => "gRPC server stopped unexpectedly".to_owned(),
                Ok(Err(e)) => format!("gRPC server failed: {e}"),
                Err(e) => format!("gRPC server panicked: {e}"),
            });
            shutdown.cancel();
        }
    }
    health.set_ready(false);
    tracker.close();
    let drained = async {
        tracker.wait().await;
        if failure.is_none() {
            let _ = (&mut server).await;
        }
    };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!("{name} did not drain within {drain_timeout:?}");
        server.abort();
    }
    failure.map_or(Ok(()), Err)
}
