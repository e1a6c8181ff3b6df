//! The tail of every service binary's `main` ([`run`]): install the crypto
//! provider, start a multi-threaded runtime and telemetry, bind the
//! listeners, publish their addresses (the ready file), cancel on
//! SIGINT/SIGTERM and run the service; returns the process exit code (1 when
//! telemetry, binding or the service fails, with the error on stderr). And the
//! tail of a service's own `run` ([`serve_until_shutdown`]): serve its named
//! [`Servers`] until shutdown or until one of them stops on its own, then
//! drain.
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
use std::pin::Pin;
use std::task::Poll;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{LogConfig, TracingConfig};

/// A service's bound listeners, named as its ready file names them.
pub trait Bound {
    /// `(name, address)` per listener: `grpc`, `metrics`, `rest`, ...; a unix
    /// socket's address is its path.
    fn addresses(&self) -> Vec<(String, String)>;
}

/// `(name, address)` of TCP listeners, for [`Bound::addresses`].
pub fn tcp_addresses<'a>(
    listeners: impl IntoIterator<Item = (&'static str, &'a tokio::net::TcpListener)>,
) -> Vec<(String, String)> {
    listeners
        .into_iter()
        .map(|(name, l)| (name.to_owned(), l.local_addr().map_or_else(|e| format!("unknown ({e})"), |a| a.to_string())))
        .collect()
}

/// Writes the ready file for `listeners` at `path`: a temporary file renamed
/// into place, so a reader never sees half of it. The temporary file is
/// created new (`O_EXCL`): in a directory others can write, a file or link
/// planted at its name makes this fail instead of writing through it.
pub fn write_ready_file(path: &Path, listeners: &impl Bound) -> std::io::Result<()> {
    use std::io::Write as _;
    let addresses: serde_json::Map<String, serde_json::Value> =
        listeners.addresses().into_iter().map(|(k, v)| (k, v.into())).collect();
    let doc = serde_json::json!({ "pid": std::process::id(), "addresses": addresses });
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{doc}\n").as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&tmp);
        }
        std::io::Error::new(e.kind(), format!("cannot write the ready file {}: {e}", path.display()))
    })
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
        if let Some(path) = ready_file
            && let Err(e) = write_ready_file(path, &listeners)
        {
            eprintln!("{name}: {e}");
            return 1;
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

/// The servers of a service, each under the name an error will give it
/// (`grpc`, `rest`, `upload`...), for [`serve_until_shutdown`].
#[derive(Debug, Default)]
pub struct Servers(Vec<(&'static str, JoinHandle<Result<(), String>>)>);

impl Servers {
    /// Spawns `server` under `name`. It should stop only when the service's
    /// shutdown token is cancelled (gracefully, finishing what it serves);
    /// stopping earlier fails the service.
    pub fn spawn<E>(&mut self, name: &'static str, server: impl Future<Output = Result<(), E>> + Send + 'static)
    where
        E: std::error::Error,
    {
        self.0.push((name, tokio::spawn(async move { server.await.map_err(|e| error_chain(&e)) })));
    }

    /// The names of the servers, in the order they were spawned.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|(name, _)| *name).collect()
    }
}

/// A server that stopped before the service was told to stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {server} server {cause}")]
pub struct ServerStopped {
    /// The server's name, as given to [`Servers::spawn`].
    pub server: &'static str,
    /// `stopped on its own`, `failed: ...` or `panicked: ...`.
    pub cause: String,
}

/// The serving tail of a service's `run`: waits until `shutdown` is cancelled
/// or one of the `servers` stops on its own (then cancels `shutdown`), then
/// drains: `/healthz` turns 503, the `tracker`'s tasks and the servers'
/// graceful stops get `drain_timeout` before the servers are aborted. Returns
/// which server stopped, and why, when one did so on its own.
pub async fn serve_until_shutdown(
    name: &str,
    mut servers: Servers,
    shutdown: &CancellationToken,
    health: &crate::telemetry::Health,
    tracker: &tokio_util::task::TaskTracker,
    drain_timeout: std::time::Duration,
) -> Result<(), ServerStopped> {
    let first_to_stop = std::future::poll_fn(|cx| {
        for (i, (_, handle)) in servers.0.iter_mut().enumerate() {
            if let Poll::Ready(result) = Pin::new(handle).poll(cx) {
                return Poll::Ready((i, result));
            }
        }
        Poll::Pending
    });
    let stopped = tokio::select! {
        // Servers stop when told to: once `shutdown` is cancelled, a server
        // that has stopped too did not stop on its own.
        biased;
        _ = shutdown.cancelled() => None,
        stopped = first_to_stop => Some(stopped),
    };
    let failure = stopped.and_then(|(i, result)| {
        // Finished: removed, so the drain neither awaits nor aborts it again.
        let (server, _) = servers.0.remove(i);
        // `shutdown` may have been cancelled between the select's two polls,
        // and this server stopped because of it: then it was told to.
        if shutdown.is_cancelled() {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(server, error = %e, "{name}: server failed while shutting down"),
                Err(e) => tracing::warn!(server, error = %e, "{name}: server panicked while shutting down"),
            }
            return None;
        }
        let cause = match result {
            Ok(Ok(())) => "stopped on its own".to_owned(),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(e) => match e.try_into_panic() {
                Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
                Err(e) => format!("was cancelled: {e}"),
            },
        };
        shutdown.cancel();
        Some(ServerStopped { server, cause })
    });
    health.set_ready(false);
    tracker.close();
    let drained = async {
        tracker.wait().await;
        for (server, handle) in &mut servers.0 {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(server = *server, error = %e, "{name}: server failed while draining"),
                Err(e) => tracing::warn!(server = *server, error = %e, "{name}: server panicked while draining"),
            }
        }
    };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!("{name} did not drain within {drain_timeout:?}");
        for (_, handle) in &servers.0 {
            handle.abort();
        }
    }
    failure.map_or(Ok(()), Err)
}

/// `e: its source: its source's source...`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::task::TaskTracker;

    use super::*;

    struct Two;
    impl Bound for Two {
        fn addresses(&self) -> Vec<(String, String)> {
            vec![("grpc".into(), "127.0.0.1:40123".into()), ("socket".into(), "/run/x.sock".into())]
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
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["ready.json"], "the temporary file is renamed away");
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let (path, target) = (dir.path().join("ready.json"), dir.path().join("victim"));
        std::fs::write(&target, "keep me").unwrap();
        let planted = dir.path().join(format!("ready.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let err = write_ready_file(&path, &Two).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert!(!path.exists());
    }

    /// A server that stops when `shutdown` is cancelled and says so on `stopped`.
    fn graceful(
        shutdown: &CancellationToken,
        stopped: tokio::sync::oneshot::Sender<()>,
    ) -> impl Future<Output = Result<(), std::io::Error>> + Send + 'static {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            let _ = stopped.send(());
            Ok(())
        }
    }

    /// `GET /healthz` on `addr`: the status code.
    async fn healthz(addr: std::net::SocketAddr) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{response:?}"))
    }

    #[tokio::test]
    async fn a_server_stopping_on_its_own_stops_the_service_and_is_named() {
        let (shutdown, health, tracker) =
            (CancellationToken::new(), crate::telemetry::Health::default(), TaskTracker::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = listener.local_addr().unwrap();
        let metrics = crate::telemetry::MetricsServer::spawn(listener, prometheus::Registry::new(), health.clone());
        let (grpc_stopped, grpc_saw_stop) = tokio::sync::oneshot::channel();
        let (fail, failed) = tokio::sync::oneshot::channel::<()>();
        let mut servers = Servers::default();
        servers.spawn("grpc", graceful(&shutdown, grpc_stopped));
        servers.spawn("rest", async move {
            let _ = failed.await;
            Err(std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "listener closed"))
        });
        assert_eq!(servers.names(), ["grpc", "rest"]);
        let task = tracker.spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
        health.set_ready(true);
        assert_eq!(healthz(metrics_addr).await, 200);

        let serving = tokio::spawn({
            let (shutdown, health, tracker) = (shutdown.clone(), health.clone(), tracker.clone());
            async move { serve_until_shutdown("test", servers, &shutdown, &health, &tracker, Duration::from_secs(30)).await }
        });
        fail.send(()).unwrap();
        let result = serving.await.unwrap();

        assert_eq!(
            result,
            Err(ServerStopped { server: "rest", cause: "failed: listener closed".into() }),
            "the error names the server and says why"
        );
        assert_eq!(result.unwrap_err().to_string(), "the rest server failed: listener closed");
        assert!(shutdown.is_cancelled(), "the service was told to stop");
        assert_eq!(healthz(metrics_addr).await, 503, "/healthz turned 503");
        assert!(grpc_saw_stop.await.is_ok(), "the other server stopped gracefully");
        assert!(task.is_finished() && tracker.is_closed(), "the tracker was drained");
        metrics.stop().await;
    }

    #[tokio::test]
    async fn a_server_returning_ok_or_panicking_early_is_a_failure_too() {
        let (health, tracker) = (crate::telemetry::Health::default(), TaskTracker::new());
        let shutdown = CancellationToken::new();
        let mut servers = Servers::default();
        servers.spawn("upload", async { Ok::<(), std::io::Error>(()) });
        let err = serve_until_shutdown("t", servers, &shutdown, &health, &tracker, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "the upload server stopped on its own");
        assert!(shutdown.is_cancelled());

        let shutdown = CancellationToken::new();
        let mut servers = Servers::default();
        servers.spawn("piece", async {
            if true {
                panic!("boom");
            }
            Ok::<(), std::io::Error>(())
        });
        let err = serve_until_shutdown("t", servers, &shutdown, &health, &TaskTracker::new(), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!((err.server, err.cause.as_str()), ("piece", "panicked: boom"));
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn shutdown_drains_every_server_and_aborts_those_past_the_deadline() {
        let (shutdown, health, tracker) =
            (CancellationToken::new(), crate::telemetry::Health::default(), TaskTracker::new());
        let (a_stopped, a_saw_stop) = tokio::sync::oneshot::channel();
        let (b_dropped, b_was_dropped) = tokio::sync::oneshot::channel::<()>();
        let mut servers = Servers::default();
        servers.spawn("a", graceful(&shutdown, a_stopped));
        servers.spawn("stuck", async move {
            let _dropped_on_abort = b_dropped;
            std::future::pending::<Result<(), std::io::Error>>().await
        });
        health.set_ready(true);
        shutdown.cancel();
        let result = serve_until_shutdown("t", servers, &shutdown, &health, &tracker, Duration::from_millis(50)).await;
        assert_eq!(result, Ok(()), "a requested shutdown is not a failure");
        assert!(!health.is_ready());
        assert!(a_saw_stop.await.is_ok(), "the graceful server stopped");
        let aborted = tokio::time::timeout(Duration::from_secs(10), b_was_dropped).await;
        assert!(matches!(aborted, Ok(Err(_))), "the stuck server was aborted (its sender dropped unsent): {aborted:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn servers_stopping_because_they_were_told_to_are_not_a_failure() {
        // The servers stop at once when cancelled, racing the wake-up of the
        // shutdown branch; many rounds so an unordered choice would show.
        for round in 0..200 {
            let (shutdown, health, tracker) =
                (CancellationToken::new(), crate::telemetry::Health::default(), TaskTracker::new());
            let mut servers = Servers::default();
            for name in ["a", "b", "c"] {
                let shutdown = shutdown.clone();
                servers.spawn(name, async move {
                    shutdown.cancelled().await;
                    Ok::<(), std::io::Error>(())
                });
            }
            let serving = tokio::spawn({
                let (shutdown, health, tracker) = (shutdown.clone(), health.clone(), tracker.clone());
                async move {
                    serve_until_shutdown("t", servers, &shutdown, &health, &tracker, Duration::from_secs(30)).await
                }
            });
            shutdown.cancel();
            assert_eq!(serving.await.unwrap(), Ok(()), "round {round}");
        }
    }

    #[test]
    fn an_unwritable_ready_file_is_a_clear_error() {
        let err = write_ready_file(Path::new("/nonexistent-dir/ready.json"), &Two).unwrap_err();
        assert!(err.to_string().contains("cannot write the ready file /nonexistent-dir/ready.json"), "{err}");
    }
}
