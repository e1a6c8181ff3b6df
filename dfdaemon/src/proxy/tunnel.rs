//! `CONNECT host:port`: a plain TCP tunnel (TLS stays end to end; the proxy
//! sees neither the requests nor the bytes).

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Copies bytes both ways between the upgraded client connection and the target.
pub async fn run(upgraded: Upgraded, mut target: TcpStream) {
    let mut client = TokioIo::new(upgraded);
    match tokio::io::copy_bidirectional(&mut client, &mut target).await {
        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
        Err(e) => tracing::debug!(error = %e, "tunnel broke"),
    }
}
