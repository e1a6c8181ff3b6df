//! The piece data server: verified piece bytes to other peers over plain
//! HTTP/1.1 (keep-alive, one piece per request, no gRPC framing on the bulk
//! path). The only route is `GET /v1/tasks/{task_id}/pieces/{number}`; the task
//! ID is validated before it touches storage and nothing else from the
//! request reaches the filesystem. The response carries the piece's digest in
//! `x-darter-piece-digest`.
//!
//! It speaks only this exchange, like [`crate::piece_client`], so that a
//! piece goes from the page cache to the socket with `sendfile`
//! (`send_file`): never read into the daemon, zeroed or copied through it.
//! (Through a general HTTP server each upload cost a fresh piece-sized
//! buffer, a `pread` into it and a copy into the socket.)
//!
//! Bounds, since any peer can connect: at most `slots` uploads run at once
//! (more wait in a short line, neediest child first, and get 503 when it
//! is full or they waited [`slots::MAX_WAIT`]; see [`slots`]), and a slot
//! is held until the piece's bytes are in the socket; a reader that takes
//! nothing for [`SEND_STALL_TIMEOUT`] loses its connection and its slot; at
//! most [`MAX_CONNECTIONS`] connections are open (more are closed on
//! accept); a connection that does not finish sending request headers
//! within [`HEADER_READ_TIMEOUT`] is closed; request heads are at most
//! [`request::MAX_HEAD`] bytes and carry no body.

mod request;
mod send_file;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use darter_common::task_id::TaskId;
use http::StatusCode;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::request::{BadRequest, Request, read_request};
use self::send_file::send_file;
use self::slots::{Slot, UploadSlots};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimit;
use crate::storage::{Lease, Storage, StoredPiece};
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

/// Time a reader may take nothing of a piece before its connection (and
/// upload slot) is dropped.
pub const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of the piece server.
#[derive(Debug)]
pub struct PieceServer {
    storage: Arc<Storage>,
    slots: Arc<UploadSlots>,
    connections: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    corrupt: bool,
    rate: Option<RateLimit>,
}

/// Test-only fault injection: when this environment variable is `1`, every
/// piece served has its first byte flipped, so tests can show that children
/// reject a lying parent. Nothing in the config turns it on.
pub const CORRUPT_PIECES_ENV: &str = "DFDAEMON_FAULT_CORRUPT_PIECES";

/// The answer to one request.
enum Reply {
    /// A short text answer (errors).
    Plain(StatusCode, &'static str),
    /// A verified piece, sent under its upload slot.
    Piece { lease: Lease, piece: StoredPiece, head_only: bool, _slot: Slot },
}

impl Reply {
    fn result(&self) -> &'static str {
        match self {
            Reply::Piece { .. } => "success",
            Reply::Plain(StatusCode::SERVICE_UNAVAILABLE, _) => "busy",
            Reply::Plain(..) => "refused",
        }
    }
}

/// A response head; `close` adds `connection: close`.
fn head(status: StatusCode, content_type: &str, length: u64, digest: Option<&str>, close: bool) -> String {
    let mut h = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if let Some(d) = digest {
        h.push_str(&format!("{PIECE_DIGEST_HEADER}: {d}\r\n"));
    }
    if close {
        h.push_str("connection: close\r\n");
    }
    h.push_str("\r\n");
    h
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
            slots: UploadSlots::new(slots, metrics.upload_waiting.clone()),
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
            // Room for a whole piece in the socket: the sender is woken once
            // per piece rather than every time a small buffer drains.
            let _ = set_send_buffer(&stream, SEND_BUFFER);
            let this = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _connection = connection;
                tokio::select! {
                    r = this.connection(stream) => if let Err(e) = r {
                        tracing::debug!(error = %e, "piece connection ended");
                    },
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }

    /// Answers the requests of one connection until it closes, errs, idles
    /// past [`HEADER_READ_TIMEOUT`] or asks to close.
    async fn connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            let read = tokio::time::timeout(HEADER_READ_TIMEOUT, read_request(&mut stream, &mut buf)).await;
            let request = match read {
                Err(_) => return Ok(()),
                Ok(read) => match read? {
                    Ok(Some(request)) => request,
                    Ok(None) => return Ok(()),
                    Err(bad) => {
                        let (status, msg) = match bad {
                            BadRequest::TooLarge => {
                                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
                            }
                            BadRequest::Malformed(why) => {
                                tracing::debug!(reason = %why, "malformed piece request");
                                (StatusCode::BAD_REQUEST, "malformed request")
                            }
                        };
                        return write_plain(&mut stream, status, msg, true).await;
                    }
                },
            };
            let reply = self.route(&request).await;
            self.metrics.uploads.with_label_values(&[reply.result()]).inc();
            let close = !request.keep_alive;
            match reply {
                Reply::Plain(status, msg) => write_plain(&mut stream, status, msg, close).await?,
                Reply::Piece { lease, piece, head_only, _slot } => {
                    self.send_piece(&mut stream, &lease, &piece, head_only, close).await?
                }
            }
            if close {
                return Ok(());
            }
        }
    }

    async fn route(&self, req: &Request) -> Reply {
        let Some(rest) = req.path.strip_prefix("/v1/tasks/") else {
            return Reply::Plain(StatusCode::NOT_FOUND, "unknown path");
        };
        let mut parts = rest.split('/');
        let (Some(raw_id), Some("pieces"), Some(raw_number), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Reply::Plain(StatusCode::NOT_FOUND, "unknown path");
        };
        let head_only = match req.method.as_str() {
            "GET" => false,
            "HEAD" => true,
            _ => return Reply::Plain(StatusCode::METHOD_NOT_ALLOWED, "only GET"),
        };
        let Ok(id) = TaskId::parse(raw_id) else {
            return Reply::Plain(StatusCode::BAD_REQUEST, "invalid task id");
        };
        let Ok(number) = raw_number.parse::<u32>() else {
            return Reply::Plain(StatusCode::BAD_REQUEST, "invalid piece number");
        };
        let Some(lease) = self.storage.lease(&id) else {
            return Reply::Plain(StatusCode::NOT_FOUND, "unknown task");
        };
        let Some(piece) = lease.piece(number) else {
            return Reply::Plain(StatusCode::NOT_FOUND, "piece not available");
        };
        let Some(slot) = self.slots.acquire(req.have, slots::MAX_WAIT).await else {
            return Reply::Plain(StatusCode::SERVICE_UNAVAILABLE, "upload slots full");
        };
        Reply::Piece { lease, piece, head_only, _slot: slot }
    }

    /// The piece's head, then its bytes from the content file.
    async fn send_piece(
        &self,
        stream: &mut TcpStream,
        lease: &Lease,
        piece: &StoredPiece,
        head_only: bool,
        close: bool,
    ) -> std::io::Result<()> {
        let digest = piece.digest.to_string();
        let head = head(StatusCode::OK, "application/octet-stream", piece.length, Some(&digest), close);
        if head_only {
            return stream.write_all(head.as_bytes()).await;
        }
        if let Some(rate) = &self.rate {
            rate.acquire(piece.length).await;
        }
        if self.corrupt {
            return self.send_corrupted(stream, lease, piece, head).await;
        }
        stream.write_all(head.as_bytes()).await?;
        send_file(stream, lease.content_file(), piece.offset, piece.length, SEND_STALL_TIMEOUT).await?;
        self.metrics.upload_bytes.inc_by(piece.length);
        Ok(())
    }

    /// Fault injection ([`CORRUPT_PIECES_ENV`]): the piece with its first byte flipped.
    async fn send_corrupted(
        &self,
        stream: &mut TcpStream,
        lease: &Lease,
        piece: &StoredPiece,
        head: String,
    ) -> std::io::Result<()> {
        let (lease, number) = (lease.clone(), piece.number);
        let read = tokio::task::spawn_blocking(move || lease.read_piece(number)).await;
        let Ok(Ok((_, bytes))) = read else {
            return Err(std::io::Error::other("cannot read the piece to corrupt"));
        };
        tracing::warn!(number, "fault injection: serving a corrupted piece");
        let mut body = bytes.to_vec();
        if let Some(first) = body.first_mut() {
            *first ^= 0xff;
        }
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        self.metrics.upload_bytes.inc_by(piece.length);
        Ok(())
    }
}

/// A short text answer.
async fn write_plain(stream: &mut TcpStream, status: StatusCode, msg: &str, close: bool) -> std::io::Result<()> {
    let body = format!("{msg}\n");
    let mut out = head(status, "text/plain", body.len() as u64, None, close);
    out.push_str(&body);
    stream.write_all(out.as_bytes()).await
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

    /// Whether a fresh connection gets an answer (blocking; polled by `testkit::eventually`).
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
        testkit::eventually("a connection slot to free up", || async move { answers(addr) }).await;
        shutdown.cancel();
    }
}
