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
//! most `upload.max_connections` connections are open, and at most
//! `upload.max_connections_per_client` from one IP address (more are closed
//! on accept); a connection that does not finish sending request headers
//! within [`HEADER_READ_TIMEOUT`] is closed; request heads are at most
//! [`request::MAX_HEAD`] bytes and carry no body; a piece number past the
//! end of its task is refused (400) before anything is looked up.
//!
//! With TLS, a request must carry a piece grant from a scheduler of this
//! peer's cluster for this task and this parent ([`darter_common::tls::grant`]),
//! checked before anything is looked up (403 otherwise); in plaintext mode
//! anyone who reaches the port may fetch. With `upload.encrypt` the port
//! speaks TLS ([`Encryption`], [`crate::piece_wire`]): only peers and seed
//! peers of the cluster connect, and pieces are read and encrypted in user
//! space instead of `sendfile` (no kernel TLS here).
//!
//! A listener that fails for good (not a client's aborted connection or a
//! momentary lack of file descriptors) ends [`PieceServer::serve`] with its
//! error, which stops the daemon (`/healthz` 503, exit 1 naming the server)
//! instead of spinning on it.

pub mod request;
mod send_file;
pub mod slots;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use darter_common::piece::{MAX_PIECE_COUNT, piece_count};
use darter_common::sync::MutexExt as _;
use darter_common::task_id::TaskId;
use darter_common::tls::Expect;
use darter_common::tls::certificate::Facts;
use darter_common::tls::grant::Checker;
use http::StatusCode;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::request::{BadRequest, Request, read_request};
use self::send_file::send_file;
use self::slots::{Slot, UploadSlots};
use crate::buffer_pool::BufferPool;
use crate::metrics::Metrics;
use crate::piece_wire::Wire;
use crate::rate_limit::RateLimit;
use crate::storage::{Lease, Storage, StoredPiece};
use darter_common::sockopt::set_send_buffer;

/// The path of piece `number` of task `task_id` on a piece server.
pub fn piece_path(task_id: &TaskId, number: u32) -> String {
    format!("/v1/tasks/{task_id}/pieces/{number}")
}

/// Header carrying the piece digest.
pub const PIECE_DIGEST_HEADER: &str = "x-darter-piece-digest";

/// Connections open at once by default (`upload.max_connections`); more are
/// accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Send buffer of a piece connection (the kernel doubles it).
pub const SEND_BUFFER: usize = 2 << 20;

/// Time a connection gets to send a request's headers (also while idle
/// between keep-alive requests).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a reader may take nothing of a piece before its connection (and
/// upload slot) is dropped.
pub const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Records an encrypted connection keeps in hand for its last response:
/// once its key has fewer left, the response says `connection: close`
/// (a piece of 1 GiB is 65,536 records).
const RECORD_RESERVE: u64 = 1 << 16;

/// Pause after `accept` failed for lack of descriptors or memory, so the
/// loop does not spin while connections close.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What a piece server allows (`upload.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent uploads (`upload.slots`).
    pub slots: usize,
    /// Connections open at once (`upload.max_connections`).
    pub max_connections: usize,
    /// Connections open at once from one IP address (`upload.max_connections_per_client`).
    pub max_connections_per_client: usize,
    /// Upload bandwidth for all peers together, bytes per second (`upload.rate_limit`).
    pub rate_limit: Option<u64>,
}

impl Limits {
    /// The limits `upload:` sets.
    pub fn from_config(c: &crate::config::UploadConfig) -> Self {
        Self {
            slots: c.slots,
            max_connections: c.max_connections,
            max_connections_per_client: c.max_connections_per_client,
            rate_limit: c.rate_limit.map(|r| r.as_u64()),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&crate::config::UploadConfig::default())
    }
}

/// Shared state of the piece server.
#[derive(Debug)]
pub struct PieceServer {
    storage: Arc<Storage>,
    slots: Arc<UploadSlots>,
    connections: Arc<Semaphore>,
    clients: Arc<Clients>,
    limits: Limits,
    metrics: Arc<Metrics>,
    corrupt: bool,
    rate: Option<RateLimit>,
    grants: Option<Checker>,
    encryption: Option<Encryption>,
    /// Record batches of encrypted sends, lent for one piece at a time.
    batches: Arc<BufferPool>,
}

/// Encrypted piece connections (`upload.encrypt`): the TLS config and the
/// cluster whose peers and seed peers may connect.
#[derive(Clone)]
pub struct Encryption {
    config: Arc<rustls::ServerConfig>,
    cluster: u64,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl Encryption {
    /// TLS with `transport`'s credentials, for the members of `cluster`
    /// (`None` in plaintext mode).
    pub fn new(transport: &darter_common::tls::Transport, cluster: u64) -> Option<Self> {
        Some(Encryption { config: crate::piece_wire::server_config(transport)?, cluster })
    }

    /// The handshake, within [`HEADER_READ_TIMEOUT`]; `None` (logged) when
    /// it fails or the client is not a peer or seed peer of the cluster.
    async fn accept(&self, mut stream: TcpStream) -> Option<Wire> {
        let addr = stream.peer_addr().ok();
        let handshake = crate::piece_wire::handshake::server(self.config.clone(), &mut stream);
        let established = match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await {
            Ok(Ok(established)) => established,
            Ok(Err(e)) => {
                tracing::debug!(client = ?addr, error = %e, "piece connection: TLS handshake refused");
                return None;
            }
            Err(_) => {
                tracing::debug!(client = ?addr, "piece connection: TLS handshake timed out");
                return None;
            }
        };
        let identity = established.peer.as_ref().map(|c| Facts::parse(c));
        match identity {
            Some(Ok(facts)) if Expect::daemon(self.cluster).check(&facts.identity).is_ok() => {
                Some(Wire::Sealed(Box::new(crate::piece_wire::Sealed::new(stream, established))))
            }
            other => {
                tracing::debug!(client = ?addr, certificate = ?other.map(|f| f.map(|f| f.identity.to_string())), "piece connection from outside the cluster refused");
                None
            }
        }
    }
}

/// Open connections per client IP address.
#[derive(Debug, Default)]
struct Clients(Mutex<HashMap<IpAddr, usize>>);

/// One client's connection, counted until dropped.
struct ClientConnection {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Clients {
    /// Counts a connection from `ip`, unless it already has `max` open.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientConnection> {
        let ip = ip.to_canonical();
        let mut open = self.0.locked();
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientConnection { clients: self.clone(), ip })
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        let mut open = self.clients.0.locked();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What an error of `accept` means for the listener (for every accept loop
/// of the daemon: [`classify_accept_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// One connection failed (aborted, reset by the client...): go on.
    Connection,
    /// The process or system is out of descriptors or memory for now: go on after a pause.
    Exhausted,
    /// The listener itself is broken: stop serving.
    Fatal,
}

/// Whether an `accept` error concerns one connection, a momentary lack of
/// resources, or the listener itself (then serving must stop, not spin).
pub fn classify_accept_error(e: &std::io::Error) -> AcceptError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock | TimedOut => {
            AcceptError::Connection
        }
        _ => match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Exhausted,
            // Network errors of the connection being accepted, as accept(2) lists them.
            Some(libc::EPROTO | libc::ENOPROTOOPT | libc::EHOSTDOWN | libc::ENONET | libc::EHOSTUNREACH)
            | Some(libc::EOPNOTSUPP | libc::ENETDOWN | libc::ENETUNREACH | libc::EPERM) => AcceptError::Connection,
            _ => AcceptError::Fatal,
        },
    }
}

/// Why a request path names no piece: the status and a short reason.
pub type PathRefusal = (StatusCode, &'static str);

/// Parses `/v1/tasks/{task_id}/pieces/{number}` (a path from the network):
/// the task ID validated, the number a `u32` (not yet checked against the task).
pub fn parse_piece_path(path: &str) -> Result<(TaskId, u32), PathRefusal> {
    let Some(rest) = path.strip_prefix("/v1/tasks/") else {
        return Err((StatusCode::NOT_FOUND, "unknown path"));
    };
    let mut parts = rest.split('/');
    let (Some(raw_id), Some("pieces"), Some(raw_number), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((StatusCode::NOT_FOUND, "unknown path"));
    };
    let Ok(id) = TaskId::parse(raw_id) else {
        return Err((StatusCode::BAD_REQUEST, "invalid task id"));
    };
    let Ok(number) = raw_number.parse::<u32>() else {
        return Err((StatusCode::BAD_REQUEST, "invalid piece number"));
    };
    Ok((id, number))
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
            Reply::Plain(StatusCode::FORBIDDEN, _) => "forbidden",
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
    /// A server over `storage` with `slots` concurrent uploads and the other limits' defaults.
    pub fn new(storage: Arc<Storage>, slots: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_limits(storage, Limits { slots, ..Limits::default() }, metrics)
    }

    /// A server over `storage` with `limits`.
    pub fn with_limits(storage: Arc<Storage>, limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_security(storage, limits, metrics, None, None)
    }

    /// A server over `storage` with `limits`, checking `grants` and
    /// speaking TLS when `encryption` is given.
    pub fn with_security(
        storage: Arc<Storage>,
        limits: Limits,
        metrics: Arc<Metrics>,
        grants: Option<Checker>,
        encryption: Option<Encryption>,
    ) -> Arc<Self> {
        Arc::new(Self {
            storage,
            slots: UploadSlots::new(limits.slots, metrics.upload_waiting.clone()),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            clients: Arc::default(),
            limits,
            metrics,
            corrupt: std::env::var(CORRUPT_PIECES_ENV).is_ok_and(|v| v == "1"),
            rate: limits.rate_limit.map(RateLimit::new),
            grants,
            encryption,
            // Kept when idle: as many as uploads can run at once, up to 8.
            batches: BufferPool::new(limits.slots.min(8) * crate::piece_wire::sealed::BATCH_BYTES),
        })
    }

    /// Accepts connections until `shutdown`; an error when the listener
    /// fails for good.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => match classify_accept_error(&e) {
                        AcceptError::Connection => continue,
                        AcceptError::Exhausted => {
                            tracing::warn!(error = %e, "piece server cannot accept for now; pausing");
                            tokio::time::sleep(ACCEPT_PAUSE).await;
                            continue;
                        }
                        AcceptError::Fatal => {
                            tracing::error!(error = %e, "piece server listener failed");
                            return Err(e);
                        }
                    },
                },
            };
            let Ok(connection) = self.connections.clone().try_acquire_owned() else {
                tracing::debug!(limit = self.limits.max_connections, "piece server connection limit reached, closing");
                drop(stream);
                continue;
            };
            let Some(client) = self.clients.admit(peer.ip(), self.limits.max_connections_per_client) else {
                tracing::debug!(client = %peer.ip(), limit = self.limits.max_connections_per_client, "piece server connection limit of one client reached, closing");
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
                let _connection = (connection, client);
                let serve = async {
                    let wire = match &this.encryption {
                        None => Wire::Plain(stream),
                        Some(encryption) => match encryption.accept(stream).await {
                            Some(wire) => wire,
                            None => return,
                        },
                    };
                    if let Err(e) = this.connection(wire).await {
                        tracing::debug!(error = %e, "piece connection ended");
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }

    /// Answers the requests of one connection until it closes, errs, idles
    /// past [`HEADER_READ_TIMEOUT`] or asks to close.
    async fn connection(&self, mut stream: Wire) -> std::io::Result<()> {
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
            // A refused grant ends the connection: each guess at a grant
            // costs the caller a new connection, not just a request.
            let close = !request.keep_alive
                || matches!(reply, Reply::Plain(StatusCode::FORBIDDEN, _))
                || stream.records_left() < RECORD_RESERVE;
            match reply {
                Reply::Plain(status, msg) => write_plain(&mut stream, status, msg, close).await?,
                Reply::Piece { lease, piece, head_only, _slot } => {
                    self.send_piece(&mut stream, &lease, &piece, head_only, close).await?
                }
            }
            // An encrypted connection seals what was written into records
            // and sends them now (a HEAD answer is only written).
            stream.flush().await?;
            if close {
                // A TLS client learns the answer is whole (close_notify).
                return stream.shutdown().await;
            }
        }
    }

    async fn route(&self, req: &Request) -> Reply {
        let parsed = parse_piece_path(&req.path);
        if let Err((StatusCode::NOT_FOUND, why)) = parsed {
            return Reply::Plain(StatusCode::NOT_FOUND, why);
        }
        let head_only = match req.method.as_str() {
            "GET" => false,
            "HEAD" => true,
            _ => return Reply::Plain(StatusCode::METHOD_NOT_ALLOWED, "only GET"),
        };
        let (id, number) = match parsed {
            Ok(found) => found,
            Err((status, why)) => return Reply::Plain(status, why),
        };
        if let Some(grants) = &self.grants
            && let Err(refusal) = grants.check(req.grant.as_deref(), id.as_str())
        {
            tracing::debug!(task_id = %id, error = %refusal, "piece request refused");
            return Reply::Plain(StatusCode::FORBIDDEN, refusal.reason());
        }
        let Some(lease) = self.storage.lease(&id) else {
            return Reply::Plain(StatusCode::NOT_FOUND, "unknown task");
        };
        let count = lease.content_length().map_or(MAX_PIECE_COUNT, |len| piece_count(len, lease.piece_length()));
        if number >= count {
            return Reply::Plain(StatusCode::BAD_REQUEST, "piece number out of range");
        }
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
        stream: &mut Wire,
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
        match stream {
            Wire::Plain(tcp) => {
                send_file(tcp, lease.content_file(), piece.offset, piece.length, SEND_STALL_TIMEOUT).await?
            }
            Wire::Sealed(sealed) => {
                let file = lease.content_file();
                sealed.send_range(file, piece.offset, piece.length, SEND_STALL_TIMEOUT, &self.batches).await?
            }
        }
        self.metrics.upload_bytes.inc_by(piece.length);
        Ok(())
    }

    /// Fault injection ([`CORRUPT_PIECES_ENV`]): the piece with its first byte flipped.
    async fn send_corrupted(
        &self,
        stream: &mut Wire,
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
        stream.flush().await?;
        self.metrics.upload_bytes.inc_by(piece.length);
        Ok(())
    }
}

/// A short text answer.
async fn write_plain(stream: &mut Wire, status: StatusCode, msg: &str, close: bool) -> std::io::Result<()> {
    let body = format!("{msg}\n");
    let mut out = head(status, "text/plain", body.len() as u64, None, close);
    out.push_str(&body);
    stream.write_all(out.as_bytes()).await?;
    stream.flush().await
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
        let limits = Limits { slots: 1, max_connections: 2, max_connections_per_client: 2, rate_limit: None };
        let server = PieceServer::with_limits(storage, limits, Arc::new(Metrics::new()));
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

    /// A connection to `addr` from the loopback address `from` (Linux
    /// answers for all of 127.0.0.0/8), so tests can be two clients.
    async fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        socket.connect(addr).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_client_cannot_take_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let limits = Limits { slots: 1, max_connections: 8, max_connections_per_client: 2, rate_limit: None };
        let server = PieceServer::with_limits(storage, limits, Arc::new(Metrics::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(server.serve(listener, shutdown.clone()));

        let mut greedy = Vec::new();
        for _ in 0..2 {
            let mut c = connect_from([127, 0, 0, 1], addr).await;
            served(&mut c).await;
            greedy.push(c);
        }
        // Its third is closed unanswered, although 6 of the 8 connections are free...
        let mut third = connect_from([127, 0, 0, 1], addr).await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await.expect("closed, not hung");
        assert!(matches!(read, Ok(0) | Err(_)), "closed without an answer: {read:?}");
        // ... and another client is served.
        let mut other = connect_from([127, 0, 0, 2], addr).await;
        served(&mut other).await;
        // The greedy client gets a connection again once one of its own closes.
        drop(greedy.pop());
        testkit::eventually("the client's own connection to free up", || async move { answers(addr) }).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_listener_that_fails_for_good_ends_serve_with_its_error() {
        // A listener shut down for reading fails every accept with EINVAL.
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        shut_down(&listener);
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let server = PieceServer::new(storage, 1, Arc::new(Metrics::new()));
        let served = tokio::time::timeout(Duration::from_secs(10), server.serve(listener, CancellationToken::new()))
            .await
            .expect("serve returned instead of spinning on the error");
        assert!(served.is_err(), "{served:?}");
    }

    /// `shutdown(2)` of a listening socket: every later `accept` fails.
    #[allow(unsafe_code)]
    fn shut_down(listener: &std::net::TcpListener) {
        use std::os::fd::AsRawFd as _;
        // SAFETY: the descriptor is a valid socket owned by `listener` for the whole call.
        let r = unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    }
}
