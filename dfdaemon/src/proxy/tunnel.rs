//! `CONNECT host:port`: a plain TCP tunnel (TLS stays end to end; the proxy
//! sees neither the requests nor the bytes), closed when no byte has moved
//! either way for `proxy.idle_timeout`.

use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::idle::Activity;

/// Copies bytes both ways between the upgraded client connection and the
/// target until either side closes, or nothing moves for `idle`.
pub async fn run(upgraded: Upgraded, target: TcpStream, idle: Duration) {
    let activity = Activity::default();
    let mut client = activity.track(TokioIo::new(upgraded));
    let mut target = activity.track(target);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut target) => match r {
            Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
            Err(e) => tracing::debug!(error = %e, "tunnel broke"),
        },
        () = activity.idle_for(idle) => tracing::debug!(?idle, "tunnel idle: closed (proxy.idle_timeout)"),
    }
}
