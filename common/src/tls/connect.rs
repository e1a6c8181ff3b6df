//! The client side of a control connection: a tonic channel whose
//! connections are TLS to a server that must be what the caller expects.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// An endpoint for `addr` (`host:port`), with `TCP_NODELAY`; the caller adds
/// timeouts and keepalives.
pub fn endpoint(addr: &str) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr:?} is not a host:port address: {e}"))?
        .tcp_nodelay(true))
}

/// A lazy channel over `endpoint`: TLS with `config` (whose verifier decides
/// which servers are acceptable), plain when `None`.
pub fn lazy(endpoint: Endpoint, config: Option<Arc<rustls::ClientConfig>>) -> Channel {
    let Some(config) = config else {
        return endpoint.connect_lazy();
    };
    let connector = tower::service_fn(move |uri: Uri| {
        let config = config.clone();
        async move {
            let host = uri.host().ok_or("no host in the address")?.trim_matches(['[', ']']).to_owned();
            let port = uri.port_u16().ok_or("no port in the address")?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            // The name is not checked (identities are); an IP sends no SNI.
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(host).map_err(|e| format!("bad host name: {e}"))?,
            };
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(TokioIo::new(accepted(tls).await?))
        }
    });
    endpoint.connect_with_connector_lazy(connector)
}

/// Waits for the server's first bytes (a gRPC server sends its HTTP/2
/// settings at once). In TLS 1.3 the client's side of the handshake ends
/// before the server has checked the client's certificate, so a refusal (an
/// alert: unknown CA, expired, revoked, missing) comes after it. Read here,
/// it is the connection's error and says why; read by HTTP/2 after the
/// request went out, it was often only "connection closed" or a broken pipe.
async fn accepted<S: AsyncRead + Unpin>(mut io: S) -> std::io::Result<FirstBytes<S>> {
    let mut first = vec![0; 1024];
    let n = io.read(&mut first).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection after the TLS handshake",
        ));
    }
    first.truncate(n);
    Ok(FirstBytes { first, at: 0, io })
}

/// A stream whose first bytes were already read.
struct FirstBytes<S> {
    first: Vec<u8>,
    at: usize,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.first.len() {
            let n = buf.remaining().min(this.first.len() - this.at);
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            if this.at == this.first.len() {
                this.first = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn the_first_bytes_are_read_again_and_a_silent_close_is_an_error() {
        let (mut server, client) = tokio::io::duplex(64);
        server.write_all(b"settings").await.unwrap();
        let mut stream = accepted(client).await.unwrap();
        server.write_all(b" and more").await.unwrap();
        drop(server);
        let mut all = String::new();
        stream.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "settings and more");

        let (server, client) = tokio::io::duplex(64);
        drop(server);
        let e = accepted(client).await.err().unwrap();
        assert!(e.to_string().contains("closed the connection after the TLS handshake"), "{e}");
    }
}
