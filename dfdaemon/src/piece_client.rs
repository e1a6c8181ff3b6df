//! The piece data client: fetches one piece from a parent's piece server
//! (`GET /v1/tasks/{task_id}/pieces/{number}` over HTTP/1.1, see
//! [`crate::piece_server`]) on kept-alive connections, and reads the body
//! straight into one buffer of the piece's length.
//!
//! It speaks only this exchange, instead of going through a general HTTP
//! client, to control how it reads. A shaped or virtual link delivers a
//! piece a few packets at a time, and a reader that is woken for every
//! few kilobytes spends more CPU on wake-ups than on the bytes (measured:
//! about 5.6 KB per read on the swarm benchmark's links). Before waiting,
//! the client sets the socket's receive low-water mark to what is still
//! expected, capped at [`WAKE_BYTES`], so the kernel wakes it once that
//! much has arrived.
//!
//! Idle connections are kept per parent (at most `max_idle` each) for
//! [`IDLE_FOR`], less than the server's idle timeout; a kept connection
//! that the parent closed anyway is noticed before any response byte and
//! the request is sent once more on a fresh connection.
//!
//! Bodies are read into buffers of a [`BufferPool`], which come back when the
//! piece's bytes are dropped (after it is verified and written), so a
//! download does not fault in fresh memory for every piece.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt};
use tokio::net::TcpStream;

use darter_common::sync::MutexExt as _;
use darter_common::tls::grant::GRANT_HEADER;

use crate::buffer_pool::BufferPool;
use crate::piece_server::slots::HAVE_HEADER;
use crate::piece_wire::{LowWater, Sealed, Wire, handshake, read_when_ready};

/// Most bytes the socket collects before the reader is woken.
pub const WAKE_BYTES: usize = 256 * 1024;
/// How long an idle connection is kept (the server closes at 30 s).
pub const IDLE_FOR: Duration = Duration::from_secs(20);
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body of a non-200 answer read to keep its connection.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Headers parsed in a response head.
const MAX_HEADERS: usize = 32;
/// Most bytes of idle receive buffers kept for the next pieces.
pub const POOL_BYTES: usize = 16 << 20;

/// Why a piece was not fetched.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    /// 503: the parent's upload slots are full; not its fault.
    Busy,
    /// Any other non-200 status.
    Status(u16),
    /// Connecting, sending or receiving failed, or the parent broke the protocol.
    Transport(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Busy => write!(f, "parent is busy (503)"),
            FetchError::Status(s) => write!(f, "parent answered {s}"),
            FetchError::Transport(e) => write!(f, "{e}"),
        }
    }
}

/// A connection and the low-water mark it has set.
struct Conn {
    stream: Wire,
    low_water: LowWater,
}

impl Conn {
    /// Appends at most `max` bytes to `buf` (into its spare capacity),
    /// waking only once `want` bytes are queued (or the parent closed);
    /// 0 means the parent closed. An encrypted connection is read a record
    /// at a time (`want` is for plain ones; bodies take
    /// [`Sealed::read_body`](crate::piece_wire::Sealed::read_body)).
    async fn read_into(&mut self, buf: &mut Vec<u8>, max: usize, want: usize) -> Result<usize, FetchError> {
        let tcp = match &mut self.stream {
            Wire::Sealed(sealed) => {
                sealed.set_low_water(1).map_err(|e| transport("set SO_RCVLOWAT", e))?;
                return sealed.read_buf(&mut (&mut *buf).limit(max)).await.map_err(|e| transport("read", e));
            }
            Wire::Plain(tcp) => tcp,
        };
        self.low_water.set(tcp, want).map_err(|e| transport("set SO_RCVLOWAT", e))?;
        read_when_ready(tcp, buf, max).await.map_err(|e| transport("read", e))
    }
}

/// The parts of a response head that matter here.
#[derive(Debug)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// `Content-Length`, when given.
    pub content_length: Option<u64>,
    /// Whether the connection stays open.
    pub keep_alive: bool,
}

/// How one request on one connection went.
enum Exchange {
    /// The body, and whether the connection may be kept.
    Done(Result<Bytes, FetchError>, bool),
    /// The connection was closed before any response byte (a kept
    /// connection the parent had already closed).
    Stale(FetchError),
}

fn transport(what: &str, e: std::io::Error) -> FetchError {
    FetchError::Transport(format!("{what}: {e}"))
}

/// Where pieces come from: a parent's piece server, whether it speaks TLS,
/// and the scheduler's grant to fetch from it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The piece server.
    pub addr: SocketAddr,
    /// It speaks TLS (`upload.encrypt` on the parent).
    pub encrypted: bool,
    /// The grant sent in `x-darter-grant` (none when empty).
    pub grant: Arc<str>,
}

impl Source {
    /// A plaintext piece server that asks for no grant.
    pub fn plain(addr: SocketAddr) -> Self {
        Source { addr, encrypted: false, grant: "".into() }
    }
}

/// Idle connections are kept per piece server and per kind (plain or TLS).
type IdleKey = (SocketAddr, bool);

/// Kept-alive connections to parents' piece servers.
pub struct PieceClient {
    idle: Mutex<HashMap<IdleKey, Vec<(Instant, Wire)>>>,
    max_idle: usize,
    connect_timeout: Duration,
    buffers: Arc<BufferPool>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for PieceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceClient").field("max_idle", &self.max_idle).field("tls", &self.tls.is_some()).finish()
    }
}

impl PieceClient {
    /// A client keeping at most `max_idle` idle connections per parent.
    pub fn new(max_idle: usize, connect_timeout: Duration) -> Self {
        Self { idle: Mutex::default(), max_idle, connect_timeout, buffers: BufferPool::new(POOL_BYTES), tls: None }
    }

    /// The same, dialing encrypted parents with `tls` (see [`crate::piece_wire::client_config`]).
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// Drops the idle receive buffers (nothing is being downloaded).
    pub fn release_buffers(&self) {
        self.buffers.clear();
    }

    /// Fetches `path` from the piece server at `addr`, saying that this
    /// peer holds `have` pieces of the task (the parent serves those with
    /// fewest first when its slots are full); a 200 must carry exactly
    /// `length` bytes. The caller bounds the time it may take.
    pub async fn fetch(&self, addr: SocketAddr, path: &str, length: u64, have: u32) -> Result<Bytes, FetchError> {
        self.fetch_from(&Source::plain(addr), path, length, have).await
    }

    /// [`PieceClient::fetch`] from `source`: over TLS when it encrypts,
    /// with its grant.
    pub async fn fetch_from(&self, source: &Source, path: &str, length: u64, have: u32) -> Result<Bytes, FetchError> {
        let addr = source.addr;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/octet-stream\r\n{HAVE_HEADER}: {have}\r\n"
        );
        if !source.grant.is_empty() {
            request.push_str(&format!("{GRANT_HEADER}: {}\r\n", source.grant));
        }
        request.push_str("\r\n");
        let key = (addr, source.encrypted);
        if let Some(stream) = self.take_idle(key) {
            let mut conn = Conn { stream, low_water: LowWater::default() };
            match exchange(&mut conn, &request, length, &self.buffers).await {
                Exchange::Done(result, keep) => return self.finish(key, conn, result, keep),
                Exchange::Stale(e) => {
                    tracing::debug!(%addr, error = %e, "kept piece connection was closed; reconnecting")
                }
            }
        }
        let mut conn = Conn { stream: self.connect(addr, source.encrypted).await?, low_water: LowWater::default() };
        match exchange(&mut conn, &request, length, &self.buffers).await {
            Exchange::Done(result, keep) => self.finish(key, conn, result, keep),
            Exchange::Stale(e) => Err(e),
        }
    }

    /// Idle connections kept now (all parents).
    pub fn idle_connections(&self) -> usize {
        self.idle.locked().values().map(Vec::len).sum()
    }

    fn finish(
        &self,
        key: IdleKey,
        conn: Conn,
        result: Result<Bytes, FetchError>,
        keep: bool,
    ) -> Result<Bytes, FetchError> {
        if keep {
            let mut idle = self.idle.locked();
            let now = Instant::now();
            idle.retain(|_, conns| {
                conns.retain(|(since, _)| now.duration_since(*since) < IDLE_FOR);
                !conns.is_empty()
            });
            let conns = idle.entry(key).or_default();
            if conns.len() < self.max_idle {
                conns.push((now, conn.stream));
            }
        }
        result
    }

    fn take_idle(&self, key: IdleKey) -> Option<Wire> {
        let mut idle = self.idle.locked();
        let conns = idle.get_mut(&key)?;
        let now = Instant::now();
        let found = loop {
            match conns.pop() {
                Some((since, stream)) if now.duration_since(since) < IDLE_FOR => break Some(stream),
                Some(_) => continue,
                None => break None,
            }
        };
        if conns.is_empty() {
            idle.remove(&key);
        }
        found
    }

    /// A fresh connection to `addr`, with the TLS handshake when `encrypted`;
    /// both within the connect timeout.
    async fn connect(&self, addr: SocketAddr, encrypted: bool) -> Result<Wire, FetchError> {
        let timed_out = || FetchError::Transport(format!("connect to {addr}: timed out"));
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| transport(&format!("connect to {addr}"), e))?;
        let _ = stream.set_nodelay(true);
        if !encrypted {
            return Ok(Wire::Plain(stream));
        }
        let Some(tls) = &self.tls else {
            return Err(FetchError::Transport(format!(
                "the parent at {addr} encrypts piece traffic, and this peer has no TLS credentials"
            )));
        };
        let mut stream = stream;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let established = tokio::time::timeout_at(deadline, handshake::client(tls.clone(), name, &mut stream))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| transport(&format!("TLS to {addr}"), e))?;
        Ok(Wire::Sealed(Box::new(Sealed::new(stream, established))))
    }
}

/// One request and its response on `conn`.
async fn exchange(conn: &mut Conn, request: &str, length: u64, buffers: &Arc<BufferPool>) -> Exchange {
    let sent = async {
        conn.stream.write_all(request.as_bytes()).await?;
        conn.stream.flush().await
    };
    if let Err(e) = sent.await {
        return Exchange::Stale(transport("send request", e));
    }
    let mut buf = Vec::with_capacity(4096);
    let (head, head_len) = match read_head(conn, &mut buf).await {
        Ok(h) => h,
        Err(e) if buf.is_empty() => return Exchange::Stale(e),
        Err(e) => return Exchange::Done(Err(e), false),
    };
    let leftover = &buf[head_len..];
    if head.status != 200 {
        let error = if head.status == 503 { FetchError::Busy } else { FetchError::Status(head.status) };
        let keep = match head.content_length {
            Some(n) if n <= MAX_ERROR_BODY && head.keep_alive => {
                read_body(conn, leftover, Vec::with_capacity(n as usize), n as usize).await.is_ok()
            }
            _ => false,
        };
        return Exchange::Done(Err(error), keep);
    }
    match head.content_length {
        Some(n) if n == length => {}
        other => {
            let said = other.map_or("no length".to_string(), |n| format!("{n} bytes"));
            return Exchange::Done(
                Err(FetchError::Transport(format!("parent announced {said} for a piece of {length}"))),
                false,
            );
        }
    }
    let Ok(length) = usize::try_from(length) else {
        return Exchange::Done(Err(FetchError::Transport("piece too large".into())), false);
    };
    match read_body(conn, leftover, buffers.take(length), length).await {
        Ok(body) => Exchange::Done(Ok(buffers.lend(body)), head.keep_alive),
        Err(e) => Exchange::Done(Err(e), false),
    }
}

/// Reads until a whole response head is in `buf` (perhaps with the start
/// of the body after it); returns the head and its length.
async fn read_head(conn: &mut Conn, buf: &mut Vec<u8>) -> Result<(Head, usize), FetchError> {
    loop {
        let n = conn.read_into(buf, MAX_HEAD - buf.len(), 1).await?;
        if n == 0 {
            return Err(FetchError::Transport("parent closed the connection before answering".into()));
        }
        if let Some(parsed) = parse_head(buf)? {
            return Ok(parsed);
        }
        if buf.len() >= MAX_HEAD {
            return Err(FetchError::Transport(format!("response head longer than {MAX_HEAD} bytes")));
        }
    }
}

/// Parses a parent's response head (bytes from the network); `None` while
/// it is incomplete, else the head and its length.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, FetchError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(FetchError::Transport(format!("bad response head: {e}"))),
    };
    let mut head = Head {
        status: response.code.unwrap_or_default(),
        content_length: None,
        keep_alive: response.version == Some(1),
    };
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            head.content_length =
                Some(n.ok_or_else(|| FetchError::Transport("bad content-length in the response".into()))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(FetchError::Transport("piece responses must not be chunked".into()));
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.keep_alive &= !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some((head, len)))
}

/// Reads a body of exactly `length` bytes into `body` (empty, with room for
/// them, not zeroed), of which `leftover` came with the head.
async fn read_body(conn: &mut Conn, leftover: &[u8], mut body: Vec<u8>, length: usize) -> Result<Vec<u8>, FetchError> {
    if leftover.len() > length {
        return Err(FetchError::Transport("parent sent more than it announced".into()));
    }
    body.extend_from_slice(leftover);
    if let Wire::Sealed(sealed) = &mut conn.stream {
        sealed.read_body(&mut body, length).await.map_err(|e| transport("read", e))?;
        return Ok(body);
    }
    while body.len() < length {
        let remaining = length - body.len();
        let n = conn.read_into(&mut body, remaining, remaining.min(WAKE_BYTES)).await?;
        if n == 0 {
            return Err(FetchError::Transport(format!(
                "parent closed the connection after {} of {length} bytes",
                body.len()
            )));
        }
    }
    Ok(body)
}

#[cfg(test)]
#[path = "piece_client_tests.rs"]
mod tests;
