//! The tail of every service binary's `main` ([`run`]): install the crypto
//! provider, start a multi-threaded runtime and telemetry, bind the
//! listeners, publish their addresses (the ready file), cancel on
//! SIGINT/SIGTERM and run the service; returns the process exit code (1 when
//! telemetry, binding or the service fails, with the error on stderr). And the
//! tail of a gRPC service's own `run` ([`serve_until_shutdown`]): serve until
//! shutdown or failure, then drain.
//!
//! The ready file is how a supervisor (a test, the sandbox, a script) starts a
//! service on port 0 without racing for a free port: the service binds, the
//! kernel picks, and the file (written once, atomically, after every listener
//! is bound) says what it picked: `{"pid": 4242, "addresses": {"grpc":
//! "127.0.0.1:40123", "metrics": "127.0.0.1:40124"}}`. `/healthz` on the
//! `metrics` address then says when the service is ready to serve.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::telemetry::{LogConfig, TracingConfig};

/// A service's bound listeners, named as its ready file names them.
pub trait Bound {
    /// `(name, address)` per listener: `grpc`, `metrics`, `rest`, ...; a unix
    /// socket's address is its path.
    fn addresses(&self) -> Vec<(&'static str, String)>;
}

/// `(name, address)` of TCP listeners, for [`Bound::addresses`].
pub fn tcp_addresses<'a>(
    listeners: impl IntoIterator<Item = (&'static str, &'a tokio::net::TcpListener)>,
) -> Vec<(&'static str, String)> {
    listeners
        .into_iter()
        .map(|(name, l)| (name, l.local_addr().map_or_else(|e| format!("unknown ({e})"), |a| a.to_string())))
        .collect()
}

/// Writes the ready file for `listeners` at `path`: a temporary file renamed
/// into place, so a reader never sees half of it.
pub fn write_ready_file(path: &Path, listeners: &impl Bound) -> std::io::Result<()> {
    let addresses: serde_json::Map<String, serde_json::Value> =
        listeners.addresses().into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
    let doc = serde_json::json!({ "pid": std::process::id(), "addresses": addresses });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{doc}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot write the ready file {}: {e}", path.display())))
}

/// Runs a service; see the module doc. `ready_file` is where to publish the
/// bound addresses (`--ready-file`).
pub fn run<L, B, R, E>(
    name: &'static str,
    log: &LogConfig,
    tracing_config: &TracingConfig,
    ready_file: Option<&Path>,
    bind: impl FnOnce() -> B,
    serve: impl FnOnce(L, CancellationToken) -> R,
) -> i32
where
    L: Bound,
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
        if let Some(path) = ready_file {
            if let Err(e) = write_ready_file(path, &listeners) {
                eprintln!("{name}: {e}");
                return 1;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;
    impl Bound for Two {
        fn addresses(&self) -> Vec<(&'static str, String)> {
            vec![("grpc", "127.0.0.1:40123".into()), ("socket", "/run/x.sock".into())]
        }
    }

    #[test]
    fn ready_file_names_every_listener_and_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        write_ready_file(&path, &Two).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["pid"], std::process::id());
        assert_eq!(doc["addresses"]["grpc"], "127.0.0.1:40123");
        assert_eq!(doc["addresses"]["socket"], "/run/x.sock");
        assert!(!path.with_extension("tmp").exists(), "the temporary file is renamed away");
    }

    #[test]
    fn an_unwritable_ready_file_is_a_clear_error() {
        let err = write_ready_file(Path::new("/nonexistent-dir/ready.json"), &Two).unwrap_err();
        assert!(err.to_string().contains("cannot write the ready file /nonexistent-dir/ready.json"), "{err}");
    }
}
