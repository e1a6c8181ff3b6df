//! One piece connection, plain TCP or encrypted (`upload.encrypt`), for
//! both the piece server and the piece client.
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
//!
//! rustls runs the TLS 1.3 handshake ([`handshake`]); the records after it
//! are sealed and opened here ([`record`], [`sealed`]), so that piece bytes
//! are encrypted where they were read and decrypted where they arrived.
//!
//! - [`handshake`]: the handshake through rustls's unbuffered API, and the
//!   traffic secrets it hands over.
//! - [`record`]: TLS 1.3 records: seal and open in place.
//! - [`sealed`]: the connection after the handshake, with the bulk paths;
//!   [`assembly`]: a piece body put together from its records.

pub mod assembly;
pub mod handshake;
pub mod record;
pub mod sealed;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BufMut as _;
use darter_common::sockopt::set_recv_low_water;
use darter_common::tls::{Expect, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use self::sealed::Sealed;

/// A piece connection.
#[derive(Debug)]
pub enum Wire {
    /// Plain TCP: zero-copy sends and low-water reads.
    Plain(TcpStream),
    /// TLS 1.3 over TCP (either side).
    Sealed(Box<Sealed>),
}

impl Wire {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Sealed(s) => s.tcp(),
        }
    }

    /// Records the connection can still send (unbounded when plain).
    pub fn records_left(&self) -> u64 {
        match self {
            Wire::Plain(_) => u64::MAX,
            Wire::Sealed(s) => s.records_left(),
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
            Wire::Sealed($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

/// A socket's receive low-water mark (`SO_RCVLOWAT`) as last set, so that
/// it is set only when it changes.
#[derive(Debug, Default)]
pub struct LowWater(usize);

impl LowWater {
    /// Wakes readers of `tcp` only once `want` bytes are queued (or it closed).
    pub fn set(&mut self, tcp: &TcpStream, want: usize) -> io::Result<()> {
        if self.0 != want {
            set_recv_low_water(tcp, want)?;
            self.0 = want;
        }
        Ok(())
    }
}

/// Appends at most `max` bytes from `tcp` to `buf` (into its spare
/// capacity) once the socket is readable; 0 means the peer closed.
pub async fn read_when_ready(tcp: &TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    loop {
        tcp.readable().await?;
        match tcp.try_read_buf(&mut (&mut *buf).limit(max)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
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

#[cfg(test)]
mod tests;
