//! The registry mirror and HTTP proxy, on one port (`proxy.addr`, default
//! `127.0.0.1:4001`), and a mirror-only port per `proxy.registry_mirrors`
//! entry (for CRI-O, which cannot name the registry to a mirror).
//!
//! A request is one of:
//! - **mirror** (origin-form `/v2/...`, what containerd sends to a `hosts.toml`
//!   mirror): the upstream registry comes from `?ns=`, else the
//!   `X-Darter-Registry` header, else `proxy.default_registry` ([`target`]);
//! - **forward** (absolute-form `http://host/...`, `HTTP_PROXY`);
//! - **CONNECT** `host:port`: a plain tunnel ([`tunnel`]); only with a
//!   configured CA (`proxy.ca_cert`, `proxy.ca_key`) is TLS intercepted
//!   ([`mitm`]) and the requests inside served like forward requests.
//!
//! A `GET` whose upstream URL matches a rule (`proxy.rules`; by default
//! registry blobs by digest) is served through the swarm ([`p2p`]), streaming
//! as pieces land; everything else, and any P2P request that fails before its
//! first byte, is relayed to the upstream ([`passthrough`]).
//!
//! Not an open relay: a request path with a dot segment is refused before
//! anything looks at it ([`path`]); every destination (mirror upstream,
//! forward URL, `CONNECT` target, and the back-to-source of a blob served
//! through P2P) passes the [`destination`] guard, which refuses internal
//! addresses unless `proxy.allowed_destinations` lists them; `CONNECT` opens
//! tunnels only to `proxy.connect_ports` (443).
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections, request heads up to
//! `proxy.max_header_bytes` (larger: 431), [`HEADER_READ_TIMEOUT`] to send one;
//! relays and tunnels idle for `proxy.idle_timeout` are cut ([`idle`]).

pub mod destination;
pub mod idle;
pub mod ip_class;
pub mod mitm;
pub mod p2p;
pub mod passthrough;
pub mod path;
pub mod range;
pub mod refusal;
pub mod target;
pub mod tunnel;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use darter_common::digest::Digest;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use regex::Regex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, HttpBackend};
use crate::config::{BackToSourceConfig, ProxyConfig};
use crate::download::Downloads;
use crate::metrics::Metrics;
use destination::DestinationGuard;
use refusal::Refusal;
use target::{Mode, TargetError};

/// Connections open at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a connection gets to send a request head (also between keep-alive requests).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time to connect to a `CONNECT` target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An error inside a response body (cuts the connection).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body the proxy sends.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// The proxy.
pub struct Proxy {
    tasks: Arc<Downloads>,
    config: ProxyConfig,
    rules: Vec<Regex>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    connections: Arc<Semaphore>,
    interceptor: Option<mitm::Interceptor>,
    guard: Arc<DestinationGuard>,
    /// Back-to-source of the downloads the proxy starts, behind the guard.
    origin: Arc<dyn Backend>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy serving P2P requests through `tasks`, reaching HTTPS upstreams
    /// with `back_to_source`'s CAs and timeouts. Fails on a bad rule, a bad
    /// allow-list entry or an unreadable CA.
    pub fn new(
        tasks: Arc<Downloads>,
        config: ProxyConfig,
        back_to_source: &BackToSourceConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, String> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Regex::new(r).map_err(|e| format!("proxy.rules[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let interceptor = match (&config.ca_cert, &config.ca_key) {
            (Some(cert), Some(key)) => Some(mitm::Interceptor::load(cert, key)?),
            _ => None,
        };
        let guard = DestinationGuard::new(&config.allowed_destinations)
            .map_err(|(i, e)| format!("{}[{i}]: {e}", destination::FIELD))?;
        let guard = Arc::new(guard);
        let roots = crate::backend::load_ca_certs(&back_to_source.ca_certs).map_err(|e| e.to_string())?;
        let origin = HttpBackend::guarded(back_to_source, guard.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            interceptor,
            tasks,
            client: passthrough::client(roots, guard.clone(), config.idle_timeout),
            config,
            rules,
            metrics,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            guard,
            origin: Arc::new(origin),
        }))
    }

    /// Serves connections from `listener` until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        self.serve_as(listener, None, shutdown).await
    }

    /// Serves connections from the listener of a `proxy.registry_mirrors`
    /// entry: mirror requests for `registry` only.
    pub async fn serve_registry(self: Arc<Self>, listener: TcpListener, registry: String, shutdown: CancellationToken) {
        self.serve_as(listener, Some(registry.into()), shutdown).await
    }

    async fn serve_as(self: Arc<Self>, listener: TcpListener, registry: Option<Arc<str>>, shutdown: CancellationToken) {
        let head_limit = usize::try_from(self.config.max_header_bytes.as_u64()).unwrap_or(64 * 1024);
        let idle = self.config.idle_timeout;
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => { tracing::warn!(error = %e, "proxy accept failed"); continue; }
                },
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::debug!(limit = MAX_CONNECTIONS, "proxy connection limit reached, closing");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let shutdown = shutdown.clone();
            let registry = registry.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = service_fn(move |req| {
                    let (this, registry) = (this.clone(), registry.clone());
                    async move { Ok::<_, Infallible>(this.handle(req, registry.as_deref()).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(head_limit.max(8192))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(idle::WriteDeadline::new(stream, idle)), svc)
                    .with_upgrades();
                tokio::select! {
                    r = conn => if let Err(e) = r { tracing::debug!(error = %e, "proxy connection ended with an error") },
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }

    /// One request; `registry` is the listener's own (`proxy.registry_mirrors`).
    async fn handle(self: Arc<Self>, req: Request<Incoming>, registry: Option<&str>) -> Response<ProxyBody> {
        let head = head_size(&req);
        if head > self.config.max_header_bytes.as_u64() {
            self.metrics.proxy_request("any", "refused");
            return Refusal::HeadTooLarge { size: head, limit: self.config.max_header_bytes.as_u64() }
                .response(Mode::Forward);
        }
        let forward = req.method() == Method::CONNECT || req.uri().scheme().is_some();
        if let (Some(registry), true) = (registry, forward) {
            self.metrics.proxy_request("mirror", "refused");
            let why = format!("this port mirrors {registry} only (proxy.registry_mirrors): no proxying or CONNECT");
            return Refusal::from(TargetError::Bad(why)).response(Mode::Mirror);
        }
        if req.method() == Method::CONNECT {
            return self.connect(req).await;
        }
        let mode = if req.uri().scheme().is_some() { Mode::Forward } else { Mode::Mirror };
        let mode_label = match mode {
            Mode::Mirror => "mirror",
            Mode::Forward => "forward",
        };
        // Before anything routes on it: a path is checked as sent, never normalised.
        if let Err(e) = path::check_path(req.uri().path()) {
            self.metrics.proxy_request(mode_label, "refused");
            return Refusal::from(e).response(mode);
        }
        let url = match mode {
            Mode::Forward => target::forward_url(req.uri(), &self.config),
            Mode::Mirror => {
                let header = req.headers().get(target::REGISTRY_HEADER).and_then(|v| v.to_str().ok());
                target::mirror_url(req.uri(), header, registry, &self.config)
            }
        };
        let url = match url {
            Ok(u) => u,
            Err(e) => {
                self.metrics.proxy_request(mode_label, "refused");
                return Refusal::from(e).response(mode);
            }
        };
        self.serve_url(req, mode, url).await
    }

    /// Serves a request whose upstream URL is known: through P2P when a rule
    /// says so (relaying if that fails before the first byte), else relayed.
    async fn serve_url(&self, req: Request<Incoming>, mode: Mode, url: url::Url) -> Response<ProxyBody> {
        let mode_label = match mode {
            Mode::Mirror => "mirror",
            Mode::Forward => "forward",
        };
        if let Some(bad) = invalid_blob_digest(url.path()) {
            self.metrics.proxy_request(mode_label, "refused");
            return Refusal::DigestInvalid(bad.to_owned()).response(mode);
        }
        // Before the swarm or the relay reaches it. The relay and the
        // back-to-source dial through the guard again; this answers early
        // and clearly, and covers IP literals, which their resolver never sees.
        let port = url.port_or_known_default().unwrap_or(0);
        if let Err(e) = self.guard.resolve(url.host_str().unwrap_or_default(), port).await {
            self.metrics.proxy_request(mode_label, "refused");
            tracing::debug!(error = %e, "proxy destination refused");
            return Refusal::Destination(e).response(mode);
        }
        if req.method() == Method::GET && self.rules.iter().any(|r| r.is_match(url.as_str())) {
            let p2p = p2p::P2pRequest {
                url: url.clone(),
                digest: blob_digest(url.path()),
                headers: req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| vec![("authorization".to_owned(), v.to_owned())])
                    .unwrap_or_default(),
                range: req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned),
            };
            match p2p::serve(&self.tasks, p2p, self.origin.clone()).await {
                Ok(resp) => {
                    self.metrics.proxy_request(mode_label, "p2p");
                    return resp;
                }
                Err(p2p::Fallback(e)) => {
                    self.metrics.proxy_request(mode_label, "fallback");
                    tracing::warn!(url = %crate::backend::redacted(&url), error = %e, "P2P failed before the first byte; relaying to the upstream");
                }
            }
        } else {
            self.metrics.proxy_request(mode_label, "upstream");
        }
        let idle = self.config.idle_timeout;
        match passthrough::relay(&self.client, req, url.clone(), idle).await {
            Ok(mut resp) => {
                resp.headers_mut().insert("x-darter-served-by", http::HeaderValue::from_static("upstream"));
                resp
            }
            Err(e) => relay_failed(e, &url, idle).response(mode),
        }
    }

    async fn connect(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let target = match target::connect_target(req.uri(), &self.config) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.proxy_request("connect", "refused");
                return Refusal::from(e).response(Mode::Forward);
            }
        };
        if !self.config.connect_ports.contains(&target.port) {
            self.metrics.proxy_request("connect", "refused");
            let allowed = self.config.connect_ports.clone();
            return Refusal::ConnectPort { port: target.port, allowed }.response(Mode::Forward);
        }
        // Resolved and checked once; the tunnel dials exactly these addresses.
        let addrs = match self.guard.resolve(&target.host, target.port).await {
            Ok(a) => a,
            Err(e) => {
                self.metrics.proxy_request("connect", "refused");
                tracing::debug!(error = %e, "CONNECT destination refused");
                return Refusal::Destination(e).response(Mode::Forward);
            }
        };
        if let Some(interceptor) = &self.interceptor {
            return match interceptor.server_config(&target.host) {
                Ok(config) => self.intercept(req, target.to_string(), config),
                Err(e) => Refusal::Intercept(e).response(Mode::Forward),
            };
        }
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addrs[..])).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Refusal::Upstream(format!("{target}: {e}")).response(Mode::Forward),
            Err(_) => return Refusal::UpstreamTimeout(target.to_string()).response(Mode::Forward),
        };
        self.metrics.proxy_request("connect", "tunnel");
        let idle = self.config.idle_timeout;
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => tunnel::run(upgraded, stream, idle).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        Response::new(full(Bytes::new()))
    }
}

impl Proxy {
    /// Answers the `CONNECT` itself, then terminates TLS with a certificate for
    /// the host and serves the requests inside as `https://<addr>/...`.
    fn intercept(
        self: Arc<Self>,
        req: Request<Incoming>,
        addr: String,
        config: Arc<rustls::ServerConfig>,
    ) -> Response<ProxyBody> {
        self.metrics.proxy_request("connect", "intercepted");
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
            };
            let tls = match tokio_rustls::TlsAcceptor::from(config).accept(TokioIo::new(upgraded)).await {
                Ok(s) => s,
                Err(e) => return tracing::debug!(error = %e, host = %addr, "TLS handshake with the client failed"),
            };
            let this = self.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let (this, addr) = (this.clone(), addr.clone());
                async move {
                    if let Err(e) = path::check_path(req.uri().path()) {
                        this.metrics.proxy_request("forward", "refused");
                        return Ok::<_, Infallible>(Refusal::from(e).response(Mode::Forward));
                    }
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
                    let resp = match url::Url::parse(&format!("https://{addr}{path}")) {
                        Ok(url) => this.serve_url(req, Mode::Forward, url).await,
                        Err(e) => Refusal::from(TargetError::Bad(format!("https://{addr}{path}: {e}")))
                            .response(Mode::Forward),
                    };
                    Ok(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "intercepted connection ended with an error");
            }
        });
        Response::new(full(Bytes::new()))
    }
}

/// Why a relay failed: refused at dial time by the guard's resolver, an
/// upstream silent for `idle`, or any other upstream failure.
fn relay_failed(e: reqwest::Error, url: &url::Url, idle: Duration) -> Refusal {
    let shown = crate::backend::redacted(url);
    if let Some(refused) = destination::find_guard_error(&e) {
        tracing::debug!(error = %refused, "proxy destination refused at dial time");
        Refusal::Destination(refused.clone())
    } else if e.is_timeout() {
        tracing::warn!(url = %shown, ?idle, "upstream silent; relay cut");
        Refusal::UpstreamTimeout(format!("upstream {shown} sent nothing for {idle:?} (proxy.idle_timeout)"))
    } else {
        let message = format!("upstream {shown} failed: {}", crate::backend::error_chain(&e.without_url()));
        tracing::warn!(error = %message, "proxy relay failed");
        Refusal::Upstream(message)
    }
}

/// Bytes of the request line and headers, as sent.
fn head_size<B>(req: &Request<B>) -> u64 {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    (line + headers) as u64
}

/// The digest of a registry blob path (`/v2/<name>/blobs/sha256:<hex>`).
fn blob_digest(path: &str) -> Option<Digest> {
    let (_, last) = path.rsplit_once("/blobs/")?;
    last.parse().ok()
}

/// A blob path whose digest is malformed: its last segment. Upload paths
/// (`/blobs/uploads/...`) and other algorithms are not judged.
fn invalid_blob_digest(path: &str) -> Option<&str> {
    if !path.starts_with("/v2/") {
        return None;
    }
    let (_, last) = path.rsplit_once("/blobs/")?;
    let hex = last.strip_prefix("sha256:")?;
    let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (!ok).then_some(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            blob_digest(&format!("/v2/library/x/blobs/sha256:{hex}")).unwrap().to_string(),
            format!("sha256:{hex}")
        );
        assert!(blob_digest("/v2/x/manifests/latest").is_none());
        assert_eq!(invalid_blob_digest("/v2/x/blobs/sha256:zz"), Some("sha256:zz"));
        assert!(invalid_blob_digest(&format!("/v2/x/blobs/sha256:{}", "A".repeat(64))).is_some());
        assert_eq!(invalid_blob_digest(&format!("/v2/x/blobs/sha256:{hex}")), None);
        assert_eq!(invalid_blob_digest("/v2/x/blobs/uploads/1234"), None);
        assert_eq!(invalid_blob_digest("/v2/x/blobs/sha512:abc"), None);
    }

    #[test]
    fn the_default_rule_takes_blobs_only() {
        let rule = Regex::new(crate::config::BLOB_RULE).unwrap();
        let hex = "0".repeat(64);
        assert!(rule.is_match(&format!("https://r.example/v2/library/alpine/blobs/sha256:{hex}")));
        assert!(!rule.is_match("https://r.example/v2/library/alpine/manifests/latest"));
        assert!(!rule.is_match(&format!("https://r.example/v2/x/blobs/sha256:{hex}/extra")));
        assert!(!rule.is_match("https://auth.example/token?scope=repository:x:pull"));
    }
}
