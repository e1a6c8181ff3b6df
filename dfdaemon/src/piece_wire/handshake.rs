//! The handshake of an encrypted piece connection, driven through rustls's
//! unbuffered API so that every byte read from the socket stays in sight:
//! what arrives after the handshake (the child's first request may come in
//! the same segment as its `Finished`) is handed to the record layer
//! instead of being left in a rustls buffer. Then rustls hands over the
//! traffic secrets ([`super::record`]).
//!
//! Both piece configs allow TLS 1.3 only, send no session tickets and
//! allow secret extraction (`Transport::piece_server_config`,
//! `Transport::piece_client_config`).

use std::io;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ClientConfig, ExtractedSecrets, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::record::{Direction, MAX_RECORD};

/// Most bytes of handshake messages buffered at once (a certificate chain
/// of a few kilobytes fits many times over).
const MAX_HANDSHAKE_BUFFER: usize = 64 << 10;

/// A finished handshake: the keys of both directions, what was received
/// after it, and the peer's certificate.
pub struct Established {
    /// Sealing key for what this end sends.
    pub tx: Direction,
    /// Opening key for what it receives.
    pub rx: Direction,
    /// Application data rustls opened while finishing the handshake.
    pub plaintext: Vec<u8>,
    /// Bytes received after the handshake, not yet opened (records).
    pub received: Vec<u8>,
    /// The peer's end-entity certificate (verified by the config's verifier).
    pub peer: Option<CertificateDer<'static>>,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established").field("received", &self.received.len()).finish_non_exhaustive()
    }
}

/// The server's side of the handshake on `tcp`.
pub async fn server(config: Arc<ServerConfig>, tcp: &mut TcpStream) -> io::Result<Established> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    drive(conn, tcp).await
}

/// The client's side of the handshake on `tcp`, with a server that must be `name`.
pub async fn client(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: &mut TcpStream,
) -> io::Result<Established> {
    let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    drive(conn, tcp).await
}

/// What the driver needs of either side's unbuffered connection.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn peer(&self) -> Option<CertificateDer<'static>>;
    fn secrets(self) -> Result<ExtractedSecrets, rustls::Error>;
}

/// The same three calls on either side (rustls defines them per side).
macro_rules! unbuffered {
    ($connection:ty, $data:ty) => {
        impl Unbuffered for $connection {
            type Data = $data;
            fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
                self.process_tls_records(incoming)
            }
            fn peer(&self) -> Option<CertificateDer<'static>> {
                self.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned())
            }
            fn secrets(self) -> Result<ExtractedSecrets, rustls::Error> {
                Ok(self.dangerous_into_kernel_connection()?.0)
            }
        }
    };
}

unbuffered!(UnbufferedServerConnection, rustls::server::ServerConnectionData);
unbuffered!(UnbufferedClientConnection, rustls::client::ClientConnectionData);

/// Runs the handshake to its end: encodes and sends what rustls asks for,
/// reads what it waits for, and keeps what comes after.
async fn drive<C: Unbuffered>(mut conn: C, tcp: &mut TcpStream) -> io::Result<Established> {
    let mut incoming = vec![0u8; MAX_RECORD];
    let mut used = 0;
    let mut outgoing = vec![0u8; MAX_RECORD];
    let mut pending = 0;
    let mut plaintext = Vec::new();
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process(&mut incoming[..used]);
        let mut done = false;
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                incoming.copy_within(discard..used, 0);
                used -= discard;
                send_alert(&mut conn, &mut incoming[..used], tcp).await;
                return Err(tls_error(e));
            }
        };
        match state {
            ConnectionState::EncodeTlsData(mut encode) => loop {
                match encode.encode(&mut outgoing[pending..]) {
                    Ok(n) => {
                        pending += n;
                        break;
                    }
                    Err(EncodeError::InsufficientSize(e)) if pending + e.required_size <= MAX_HANDSHAKE_BUFFER => {
                        outgoing.resize(pending + e.required_size, 0)
                    }
                    Err(e) => return Err(io::Error::other(format!("TLS handshake: {e}"))),
                }
            },
            ConnectionState::TransmitTlsData(transmit) => {
                tcp.write_all(&outgoing[..pending]).await?;
                pending = 0;
                transmit.done();
            }
            ConnectionState::BlockedHandshake => {
                if used == incoming.len() {
                    if used >= MAX_HANDSHAKE_BUFFER {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS handshake messages too large"));
                    }
                    incoming.resize(used * 2, 0);
                }
                let n = tcp.read(&mut incoming[used..]).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed during the TLS handshake",
                    ));
                }
                used += n;
            }
            ConnectionState::ReadTraffic(mut read) => {
                while let Some(record) = read.next_record() {
                    let record = record.map_err(tls_error)?;
                    discard += record.discard;
                    plaintext.extend_from_slice(record.payload);
                }
                if plaintext.len() > MAX_HANDSHAKE_BUFFER {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "too much data with the TLS handshake"));
                }
            }
            ConnectionState::WriteTraffic(_) => done = true,
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed during the TLS handshake"));
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected TLS data during the handshake")),
        }
        incoming.copy_within(discard..used, 0);
        used -= discard;
        if done {
            break;
        }
    }
    debug_assert_eq!(pending, 0, "rustls had every handshake record sent");
    incoming.truncate(used);
    let peer = conn.peer();
    let secrets = conn.secrets().map_err(tls_error)?;
    let direction = |d| Direction::new(d).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
    Ok(Established { tx: direction(secrets.tx)?, rx: direction(secrets.rx)?, plaintext, received: incoming, peer })
}

/// Sends the alert rustls queued when the handshake failed, so the peer
/// learns why (best effort: the connection is closed either way). rustls
/// is given the same bytes it failed on (it remembers how far into them
/// it had read); an alert it queued comes out before it reads them again.
async fn send_alert<C: Unbuffered>(conn: &mut C, incoming: &mut [u8], tcp: &mut TcpStream) {
    let mut alert = [0u8; 64];
    let n = match conn.process(incoming).state {
        Ok(ConnectionState::EncodeTlsData(mut encode)) => encode.encode(&mut alert).unwrap_or(0),
        _ => 0,
    };
    if n > 0 {
        let _ = tcp.write_all(&alert[..n]).await;
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
