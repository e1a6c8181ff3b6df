//! One piece connection, plain TCP or TLS (`upload.encrypt`), for both the
//! piece server and the piece client.
//!
//! Plain is the default: a parent sends a piece with `sendfile` (see
//! `piece_server::send_file`) and a child sets the socket's receive
//! low-water mark. This kernel has no kernel TLS, so an encrypted piece is
//! read from the page cache into the daemon and encrypted in user space: the
//! switch trades the zero-copy send for confidentiality (the bytes are
//! verified by digest either way). Both ends authenticate with their member
//! certificates: the parent accepts only peers and seed peers of its cluster,
//! the child only a parent of its cluster
//! (`Transport::piece_server_config`, `Transport::piece_client_config`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use darter_common::tls::{Expect, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of encrypted records a TLS connection buffers before writing them
/// out (rustls's default is 64 KiB): fewer, larger writes per piece.
pub const TLS_BUFFER: usize = 1 << 20;

/// A piece connection.
#[derive(Debug)]
pub enum Wire {
    /// Plain TCP: zero-copy sends and low-water reads.
    Plain(TcpStream),
    /// TLS over TCP (either side).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Wire {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Tls(s) => s.get_ref().0,
        }
    }
}

/// The piece server's TLS config: member certificates required on both
/// sides (`None` in plaintext mode).
pub fn server_config(transport: &Transport) -> Option<Arc<rustls::ServerConfig>> {
    transport.piece_server_config()
}

/// The piece client's TLS config: the server must be a peer or seed peer of
/// `cluster` (`None` in plaintext mode).
pub fn client_config(transport: &Transport, cluster: u64) -> Option<Arc<rustls::ClientConfig>> {
    transport.piece_client_config(Expect::daemon(cluster))
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Wire::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Wire::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Wire {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}
