//! A real HTTP/1.1 origin server on `127.0.0.1:0` for tests and benchmarks.
//!
//! Resources are registered with [`Origin::add`] together with a [`Behavior`]
//! that can make the origin misbehave the way real origins do (ignore ranges,
//! drop the connection mid-body, be slow, redirect, demand a header). Every
//! request is recorded in [`PathStats`], and body bytes are counted as hyper
//! takes them for the wire, so benchmarks can report origin traffic.
//!
//! Layout: `mod.rs` holds the public types and the accept loop, `handler.rs`
//! turns a request into a response, `range.rs` parses `Range`, and `body.rs`
//! produces and counts the bytes.

mod body;
mod handler;
mod range;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The body of a resource.
#[derive(Clone, Debug)]
pub enum Content {
    /// Served from memory.
    Bytes(Bytes),
    /// Served from disk with positioned reads in 256 KiB chunks, so 1 GiB
    /// benchmark files need not fit in memory. The file is opened per request,
    /// so it may be replaced between requests.
    File(PathBuf),
}

/// How the origin answers requests for one resource. The default is a
/// well-behaved server.
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Answer 200 with the full body even when a `Range` is asked, and do not
    /// advertise `Accept-Ranges`.
    pub ignore_range: bool,
    /// Use chunked transfer encoding instead of `Content-Length`.
    pub no_content_length: bool,
    /// Answer this status (e.g. 404, 500) with a short body instead of the
    /// content.
    pub status: Option<u16>,
    /// Send this many body bytes, then close the connection mid-body (a body
    /// no longer than this is sent whole). Applies to every request of the
    /// path, or only the first content request whose body is longer than the limit if `reset_once`.
    pub reset_after: Option<u64>,
    /// Apply `reset_after` only to the first content request of the path.
    pub reset_once: bool,
    /// Pace each response body at this many bytes per second (0: unlimited).
    pub rate_limit: Option<u64>,
    /// Sleep this long before sending the response headers.
    pub header_delay: Option<Duration>,
    /// Answer 302 with this `Location`.
    pub redirect_to: Option<String>,
    /// Send this `ETag` (give it quotes: `"v1"`); a request whose `If-Range`
    /// differs from it gets the whole content with 200.
    pub etag: Option<String>,
    /// Answer 403 unless the request carries this header (name, value).
    pub require_header: Option<(String, String)>,
}

/// A snapshot of what one path has seen.
#[derive(Clone, Debug, Default)]
pub struct PathStats {
    /// Requests received (any method, any outcome).
    pub requests: u64,
    /// Content body bytes handed to the connection for this path. Short
    /// bodies of error and redirect responses are not counted.
    pub body_bytes: u64,
    /// The `Range` header of each request, in order.
    pub ranges: Vec<Option<String>>,
    /// The request headers of the last request, in order received.
    pub last_headers: Vec<(String, String)>,
}

/// A registered resource; replaced as a whole by [`Origin::add`].
struct Resource {
    content: Content,
    behavior: Behavior,
    /// Set once a `reset_once` resource has aborted its first response.
    reset_fired: AtomicBool,
}

/// Everything recorded for a path.
#[derive(Default)]
struct PathRecord {
    log: Mutex<PathStats>,
    body_bytes: Arc<AtomicU64>,
}

/// State shared by the accept loop, the connections and [`Origin`].
#[derive(Default)]
struct State {
    resources: Mutex<HashMap<String, Arc<Resource>>>,
    records: Mutex<HashMap<String, Arc<PathRecord>>>,
    total_body_bytes: Arc<AtomicU64>,
}

impl State {
    fn record(&self, path: &str) -> Arc<PathRecord> {
        let mut records = self.records.lock().unwrap();
        Arc::clone(records.entry(path.to_owned()).or_default())
    }
}

/// A running origin server. Dropping it stops accepting and closes every open
/// connection.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Origin {
    /// Starts an origin on `127.0.0.1:0`. Panics if loopback cannot be bound;
    /// see [`Origin::try_start`].
    pub async fn start() -> Origin {
        Self::try_start().await.expect("bind test origin on 127.0.0.1:0")
    }

    /// Starts an origin on `127.0.0.1:0`, returning bind errors.
    pub async fn try_start() -> std::io::Result<Origin> {
        Self::serve_on(TcpListener::bind("127.0.0.1:0").await?)
    }

    /// Starts an origin on a listener made elsewhere (e.g. inside a network
    /// namespace by the swarm benchmark).
    pub async fn from_listener(listener: std::net::TcpListener) -> std::io::Result<Origin> {
        listener.set_nonblocking(true)?;
        Self::serve_on(TcpListener::from_std(listener)?)
    }

    fn serve_on(listener: TcpListener) -> std::io::Result<Origin> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, Arc::clone(&state), shutdown.clone()));
        Ok(Origin { addr, state, shutdown })
    }

    /// The address the origin listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` on this origin, e.g. `http://127.0.0.1:PORT/blob`.
    /// A missing leading `/` is added.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, normalize(path))
    }

    /// Registers `content` at `path` (the URL path, without query), replacing
    /// any previous resource there. Statistics of the path are kept.
    pub fn add(&self, path: &str, content: Content, behavior: Behavior) {
        let resource = Resource { content, behavior, reset_fired: AtomicBool::new(false) };
        let mut resources = self.state.resources.lock().unwrap();
        resources.insert(normalize(path), Arc::new(resource));
    }

    /// A snapshot of the statistics of `path` (all zero if never requested).
    pub fn stats(&self, path: &str) -> PathStats {
        let record = self.state.records.lock().unwrap().get(&normalize(path)).cloned();
        record.map_or_else(PathStats::default, |r| {
            let mut stats = r.log.lock().unwrap().clone();
            stats.body_bytes = r.body_bytes.load(Ordering::Relaxed);
            stats
        })
    }

    /// Content body bytes handed to connections, over all paths.
    pub fn total_body_bytes(&self) -> u64 {
        self.state.total_body_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn normalize(path: &str) -> String {
    if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }
}

async fn serve(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "origin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handler::handle(Arc::clone(&state), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "origin connection ended with error");
                    }
                }
            }
        });
    }
}
