//! The REST server: an HTTP/1.1 accept loop with the limits of `rest:`, so no
//! client holds the manager with slow, idle, many or large requests.
//!
//! - `max_connections` open connections at most, `max_connections_per_address`
//!   from one client address (an IPv6 address counts by its /64); a connection
//!   beyond either is closed as soon as it is accepted.
//! - `header_read_timeout`: a request head (request line and headers) must
//!   arrive whole within it, or the connection is closed (slowloris); an idle
//!   keep-alive connection is closed after it too. Heads larger than
//!   `max_header_size` are answered 431.
//! - `request_timeout`: reading the body and answering take at most this;
//!   longer, the handler is dropped and the answer is `503 timeout`.
//! - `max_body_size`: a larger body is answered `413 too_large` (see
//!   [`super::extract::Body`]).
//!
//! Only HTTP/1.1 is served: an HTTP/2 connection has no head to time out
//! before its preface, and nothing calling the REST API needs it.
//!
//! Every answer, whichever path made it, gets the security headers
//! ([`super::headers`]). The handlers see the client's address as axum's
//! `ConnectInfo<SocketAddr>`.
//!
//! Shutdown keeps the contract of `darter_common::service::serve_until_shutdown`:
//! on `shutdown` the listener is closed, every connection finishes the request
//! it is serving and closes, and then [`serve`] returns. If that takes longer
//! than the drain deadline the caller aborts this future, which aborts the
//! connections with it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::response::IntoResponse as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::error::ApiError;
use super::extract::BodyLimit;
use crate::config::RestConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::sign_in_throttle::ClientKey;

/// How long accepting pauses after an error that is not about one connection
/// (out of file descriptors), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` with `limits` until `shutdown`, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: RestConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let max_body = limits.max_body_size.as_u64();
    let app = app.layer(DefaultBodyLimit::max(usize::try_from(max_body).unwrap_or(usize::MAX)));
    let limits = Arc::new(limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let mut tasks = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            // Reaps finished connections, so the set holds only open ones.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "rest: accept failed");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        // Dropping `stream` closes it.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.rest_limited("max_connections");
            tracing::debug!(client = %peer, limit = limits.max_connections, "rest: connection limit reached, closing");
            continue;
        };
        let Some(slot) = PerAddress::take(&per_address, peer.ip(), limits.max_connections_per_address) else {
            metrics.rest_limited("max_connections_per_address");
            tracing::debug!(client = %peer, limit = limits.max_connections_per_address, "rest: per-address connection limit reached, closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection { app: app.clone(), limits: limits.clone(), metrics: metrics.clone(), peer, max_body };
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            conn.serve(stream, shutdown).await;
            drop((permit, slot));
        });
    }
    // Closing the listener refuses new connections while the open ones drain.
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Accept errors about one connection (it went away before being accepted).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
}

/// One accepted connection and what serving it needs.
struct Connection {
    app: Router,
    limits: Arc<RestConfig>,
    metrics: Metrics,
    peer: SocketAddr,
    max_body: u64,
}

impl Connection {
    async fn serve(self, stream: TcpStream, shutdown: CancellationToken) {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_header_size(usize::try_from(self.limits.max_header_size.as_u64()).unwrap_or(usize::MAX))
            .keep_alive(true);
        let (peer, request_timeout) = (self.peer, self.limits.request_timeout);
        let (app, metrics, max_body) = (self.app, self.metrics, self.max_body);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(BodyLimit(max_body));
            let (app, metrics) = (app.clone(), metrics.clone());
            async move {
                let mut response = match tokio::time::timeout(request_timeout, app.oneshot(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        metrics.rest_limited("request_timeout");
                        tracing::warn!(client = %peer, timeout = ?request_timeout, "rest: request timed out");
                        let message = format!(
                            "the request took longer than {} (rest.request_timeout)",
                            humantime::format_duration(request_timeout)
                        );
                        ApiError(Error::Timeout(message)).into_response()
                    }
                };
                super::headers::secure(&mut response);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = shutdown.cancelled() => {
                // Finish the request being served (if any), then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(client = %peer, error = %e, "rest: connection ended with an error");
        }
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<ClientKey, usize>>);

impl PerAddress {
    /// A slot for a connection from `ip`, or `None` when it has `limit` open.
    fn take(this: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let key = ClientKey::from(ip);
        let mut open = this.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot { owner: this.clone(), key })
    }
}

/// One open connection counted against its address; uncounted when dropped.
struct AddressSlot {
    owner: Arc<PerAddress>,
    key: ClientKey,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_slots_are_counted_and_given_back() {
        let per = Arc::new(PerAddress::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = PerAddress::take(&per, a, 2).unwrap();
        let _second = PerAddress::take(&per, a, 2).unwrap();
        assert!(PerAddress::take(&per, a, 2).is_none(), "the third from one address is refused");
        assert!(PerAddress::take(&per, b, 2).is_some(), "another address is not");
        drop(first);
        assert!(PerAddress::take(&per, a, 2).is_some(), "a closed connection gives its slot back");
    }
}
