//! Requests that do not go through the swarm are relayed to the upstream as
//! they are: method, headers (hop-by-hop ones dropped), body streamed both
//! ways, redirects handed back to the client. Credentials pass through and
//! are never logged. The upstream client resolves names through the
//! destination guard and gives up on an upstream silent for
//! `proxy.idle_timeout`; a client body stalled as long fails the relay.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, header};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Incoming;

use super::destination::{DestinationGuard, GuardedResolver};
use super::idle::IdleBody;
use super::{BoxError, ProxyBody, target::REGISTRY_HEADER};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the proxy's own.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    REGISTRY_HEADER,
];

/// The upstream client: no redirects followed (the client sees them), no
/// proxy of its own; trusts the system's CAs and `extra_roots`; dials only
/// what `guard` allows (an IP literal, which no resolver sees, must be checked
/// before); fails a read that waits longer than `idle`.
pub fn client(extra_roots: Vec<reqwest::Certificate>, guard: Arc<DestinationGuard>, idle: Duration) -> reqwest::Client {
    darter_common::install_crypto_provider();
    let mut builder = reqwest::Client::builder();
    for cert in extra_roots {
        builder = builder.add_root_certificate(cert);
    }
    builder
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(GuardedResolver(guard))
        .read_timeout(idle)
        .connect_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .expect("a plain reqwest client builds")
}

/// `headers` without hop-by-hop ones (and those the `Connection` header names).
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !named.iter().any(|c| c == n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Relays `req` to `url` and the answer back; the request body fails once
/// the client sends nothing of it for `idle`.
pub async fn relay(
    client: &reqwest::Client,
    req: Request<Incoming>,
    url: url::Url,
    idle: Duration,
) -> Result<Response<ProxyBody>, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let mut upstream = client.request(parts.method.clone(), url).headers(end_to_end(&parts.headers));
    let has_body =
        parts.headers.contains_key(header::CONTENT_LENGTH) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    if has_body {
        upstream = upstream.body(reqwest::Body::wrap(IdleBody::new(body, idle)));
    }
    let answer = upstream.send().await?;
    let mut resp = Response::builder().status(answer.status()).version(http::Version::HTTP_11);
    if let Some(h) = resp.headers_mut() {
        *h = end_to_end(answer.headers());
    }
    let frames = futures::StreamExt::map(answer.bytes_stream(), |chunk: Result<Bytes, reqwest::Error>| {
        chunk.map(hyper::body::Frame::data).map_err(BoxError::from)
    });
    Ok(resp.body(StreamBody::new(frames).boxed()).expect("status and headers came from a valid response"))
}
