//! The server side of a control connection: accept TCP, bound the number of
//! connections, run the TLS handshake off the accept loop with a deadline,
//! and hand tonic a connection that says who is calling ([`Peer`], in every
//! request's extensions). A plaintext client on a TLS port gets its calls
//! answered UNAUTHENTICATED, saying the port needs TLS, instead of bytes it
//! cannot parse.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::certificate::Facts;
use super::identity::Identity;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS (the server is not in plaintext mode).
    pub tls: bool,
    /// The identity its verified certificate names (`None` without one).
    pub identity: Option<Identity>,
    /// That certificate's serial.
    pub serial: Option<String>,
}

/// Limits on a server's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client gets to finish the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { max_connections: 4096, handshake_timeout: Duration::from_secs(10) }
    }
}

/// One accepted connection, plain or TLS.
pub struct Conn {
    io: ConnIo,
    peer: Peer,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("peer", &self.peer).finish_non_exhaustive()
    }
}

enum ConnIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

macro_rules! delegate {
    ($self:ident, $io:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            ConnIo::Plain($io) => $e,
            ConnIo::Tls($io) => $e,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            ConnIo::Plain(io) => io.is_write_vectored(),
            ConnIo::Tls(io) => io.is_write_vectored(),
        }
    }
}

/// The connections of `listener` as a stream for tonic's
/// `serve_with_incoming_shutdown`: TLS with `config` (plain when `None`),
/// at most `limits.max_connections` open at once. A failed handshake is
/// logged (at debug: anyone can knock) and never reaches the service; nor
/// does a plaintext client, which is told why (`refuse_plaintext`).
pub fn incoming(
    listener: TcpListener,
    config: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    server: &'static str,
) -> ReceiverStream<std::io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let acceptor = config.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = tx.closed() => return,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let (tcp, addr) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, go on.
                        tracing::warn!(server, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let Some(acceptor) = acceptor.clone() else {
                let peer = Peer { addr, tls: false, identity: None, serial: None };
                if tx.send(Ok(Conn { io: ConnIo::Plain(tcp), peer, _permit: permit })).await.is_err() {
                    return;
                }
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if speaks_plaintext(&tcp, limits.handshake_timeout).await {
                    tracing::debug!(server, %addr, "plaintext client on a TLS port: refused");
                    refuse_plaintext(tcp, limits.handshake_timeout).await;
                    drop(permit);
                    return;
                }
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let facts =
                            tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Facts::parse(c));
                        let (identity, serial) = match facts {
                            Some(Ok(f)) => (Some(f.identity), Some(f.serial)),
                            _ => (None, None),
                        };
                        let peer = Peer { addr, tls: true, identity, serial };
                        let _ = tx.send(Ok(Conn { io: ConnIo::Tls(Box::new(tls)), peer, _permit: permit })).await;
                    }
                    Ok(Err(e)) => tracing::debug!(server, %addr, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::debug!(server, %addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether the client's first byte shows it is not starting TLS (a
/// plaintext gRPC client sends the HTTP/2 preface, `PRI * HTTP/2.0`).
async fn speaks_plaintext(tcp: &TcpStream, timeout: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(tokio::time::timeout(timeout, tcp.peek(&mut first)).await, Ok(Ok(1)) if first[0] != TLS_HANDSHAKE)
}

/// What a plaintext client on a TLS port is told, for every call.
const PLAINTEXT_REFUSED: &str = "this port speaks mutual TLS only: connect with TLS and a member certificate \
     issued by the cluster's CA (a plaintext client is only served by a member in tls.mode: plaintext)";

/// Answers a plaintext gRPC client's calls with UNAUTHENTICATED saying that
/// the port needs TLS, for at most `timeout`, so it learns why instead of
/// failing on TLS bytes it cannot parse. Nothing it sends reaches a service.
async fn refuse_plaintext(tcp: TcpStream, timeout: Duration) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let refuse = tower::service_fn(|_request: tonic::codegen::http::Request<_>| async {
        Ok::<_, std::convert::Infallible>(
            tonic::Status::unauthenticated(PLAINTEXT_REFUSED).into_http::<tonic::body::Body>(),
        )
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http2_only();
    let connection = builder.serve_connection(TokioIo::new(tcp), hyper_util::service::TowerToHyperService::new(refuse));
    let _ = tokio::time::timeout(timeout, connection).await;
}
