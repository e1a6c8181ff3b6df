//! The piece data server: verified piece bytes to other peers over plain
//! HTTP/1.1 (keep-alive, one piece per request, no gRPC framing on the bulk
//! path). The only route is `GET /v1/tasks/{task_id}/pieces/{number}`; the task
//! ID is validated before it touches storage and nothing else from the
//! request reaches the filesystem. The response carries the piece's digest in
//! `x-darter-piece-digest`.
//!
//! Bounds, since any peer can connect: at most `slots` uploads run at once
//! (more get 503) and a slot is held until the piece's bytes have left the
//! process, so piece memory is at most `slots` pieces; at most
//! [`MAX_CONNECTIONS`] connections are open (more are closed on accept); a
//! connection that does not finish sending request headers within
//! [`HEADER_READ_TIMEOUT`] is closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use darter_common::task_id::TaskId;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::rate_limit::RateLimit;
use crate::storage::Storage;
use darter_common::sockopt::set_send_buffer;

/// The path of piece `number` of task `task_id` on a piece server.
pub fn piece_path(task_id: &TaskId, number: u32) -> String {
    format!("/v1/tasks/{task_id}/pieces/{number}")
}

/// Header carrying the piece digest.
pub const PIECE_DIGEST_HEADER: &str = "x-darter-piece-digest";

/// Connections open at once; more are accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Send buffer of a piece connection (the kernel doubles it).
pub const SEND_BUFFER: usize = 2 << 20;

/// Time a connection gets to send a request's headers (also while idle
/// between keep-alive requests).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of the piece server.
#[derive(Debug)]
pub struct PieceServer {
    storage: Arc<Storage>,
    slots: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    corrupt: bool,
    rate: Option<RateLimit>,
}

/// Test-only fault injection: when this environment variable is `1`, every
/// piece served has its first byte flipped, so tests can show that children
/// reject a lying parent. Nothing in the config turns it on.
pub const CORRUPT_PIECES_ENV: &str = "DFDAEMON_FAULT_CORRUPT_PIECES";

/// A piece's bytes that own the upload slot they were read under.
///
/// The slot must last until the bytes leave the process, not until the body
/// is handed to hyper: hyper drops a body as soon as it has taken the last
/// frame and keeps that frame (here the whole piece) in its write queue until
/// the peer reads it, so a permit kept in the body type would be released
/// while the piece is still in memory. Owned by the `Bytes` themselves, it is
/// released when hyper has written the last byte or the connection is gone.
struct SlotBytes {
    bytes: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for SlotBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

fn plain(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(format!("{msg}\n"))))
        .expect("valid response")
}

impl PieceServer {
    /// A server over `storage` with `slots` concurrent uploads.
    pub fn new(storage: Arc<Storage>, slots: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_limits(storage, slots, MAX_CONNECTIONS, metrics)
    }

    /// The same, with the host's upload bandwidth capped at `bytes_per_second`.
    pub fn with_rate_limit(
        storage: Arc<Storage>,
        slots: usize,
        metrics: Arc<Metrics>,
        bytes_per_second: Option<u64>,
    ) -> Arc<Self> {
        let mut this = Self::with_limits(storage, slots, MAX_CONNECTIONS, metrics);
        Arc::get_mut(&mut this).expect("just created").rate = bytes_per_second.map(RateLimit::new);
        this
    }

    fn with_limits(storage: Arc<Storage>, slots: usize, connections: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            storage,
            slots: Arc::new(Semaphore::new(slots)),
            connections: Arc::new(Semaphore::new(connections)),
            metrics,
            corrupt: std::env::var(CORRUPT_PIECES_ENV).is_ok_and(|v| v == "1"),
            rate: None,
        })
    }

    /// Accepts connections until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => { tracing::warn!(error = %e, "piece server accept failed"); continue; }
                },
            };
            let Ok(connection) = self.connections.clone().try_acquire_owned() else {
                tracing::debug!(limit = MAX_CONNECTIONS, "piece server connection limit reached, closing");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            // Room for a whole piece in one write: the task is woken once
            // per piece rather than every time a small buffer drains.
            let _ = set_send_buffer(&stream, SEND_BUFFER);
            let this = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _connection = connection;
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .keep_alive(true)
                    // Queue body buffers instead of copying them into one flat
                    // buffer, so that a piece's `SlotBytes` live until written.
                    .writev(true)
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let resp = self.route(&req).await;
        let result = match resp.status() {
            StatusCode::OK => "success",
            StatusCode::SERVICE_UNAVAILABLE => "busy",
            _ => "refused",
        };
        self.metrics.uploads.with_label_values(&[result]).inc();
        resp
    }

    async fn route(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let Some(rest) = path.strip_prefix("/v1/tasks/") else {
            return plain(StatusCode::NOT_FOUND, "unknown path");
        };
        let mut parts = rest.split('/');
        let (Some(raw_id), Some("pieces"), Some(raw_number), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return plain(StatusCode::NOT_FOUND, "unknown path");
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET");
        }
        let Ok(id) = TaskId::parse(raw_id) else {
            return plain(StatusCode::BAD_REQUEST, "invalid task id");
        };
        let Ok(number) = raw_number.parse::<u32>() else {
            return plain(StatusCode::BAD_REQUEST, "invalid piece number");
        };
        let Some(lease) = self.storage.lease(&id) else {
            return plain(StatusCode::NOT_FOUND, "unknown task");
        };
        if !lease.has_piece(number) {
            return plain(StatusCode::NOT_FOUND, "piece not available");
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "upload slots full");
        };
        let read = tokio::task::spawn_blocking(move || lease.read_piece(number)).await;
        match read {
            Ok(Ok((piece, mut bytes))) => {
                if let Some(rate) = &self.rate {
                    rate.acquire(bytes.len() as u64).await;
                }
                self.metrics.upload_bytes.inc_by(bytes.len() as u64);
                if self.corrupt && !bytes.is_empty() {
                    tracing::warn!(task_id = %id, number, "fault injection: serving a corrupted piece");
                    let mut v = bytes.to_vec();
                    v[0] ^= 0xff;
                    bytes = Bytes::from(v);
                }
                let body = if req.method() == Method::HEAD {
                    Bytes::new()
                } else {
                    Bytes::from_owner(SlotBytes { bytes, _permit: permit })
                };
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/octet-stream")
                    .header(PIECE_DIGEST_HEADER, piece.digest.to_string())
                    .header("content-length", piece.length)
                    .body(Full::new(body))
                    .expect("valid response")
            }
            Ok(Err(e)) => {
                tracing::warn!(task_id = %id, number, error = %e, "cannot read piece");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read piece")
            }
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read piece"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One keep-alive request for an unknown path; returns once the 404 is read.
    async fn served(conn: &mut tokio::net::TcpStream) {
        conn.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"unknown path\n") {
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 404"), "{}", String::from_utf8_lossy(&got));
    }

    /// Whether a fresh connection gets an answer (blocking, for `wait_for`).
    fn answers(addr: std::net::SocketAddr) -> bool {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got.starts_with(b"HTTP/1.1 404")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_over_the_cap_are_closed_until_one_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let server = PieceServer::with_limits(storage, 1, 2, Arc::new(Metrics::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(server.serve(listener, shutdown.clone()));

        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        served(&mut first).await;
        served(&mut second).await;

        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await.expect("closed, not hung");
        assert!(matches!(read, Ok(0) | Err(_)), "closed without an answer: {read:?}");
        served(&mut second).await;

        drop(first);
        testkit::process::wait_for("a connection slot to free up", Duration::from_secs(10), || answers(addr))
            .await
            .unwrap();
        shutdown.cancel();
    }
}
