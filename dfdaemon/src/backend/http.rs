//! HTTP(S) backend over reqwest (rustls): request headers passed through, body
//! streamed. Redirects are followed here rather than by reqwest so that the
//! caller's headers (credentials such as `Authorization` or a registry token)
//! never reach another host: once a redirect leaves the original scheme, host
//! and port, only our own `Range` and `If-Range` go along, as registries'
//! blob-storage redirects need. Error text never carries a URL's query (signed
//! URLs put secrets there): reqwest's own URL is stripped and [`redacted`]
//! names the URL instead.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_RANGE, ETAG, HeaderMap, HeaderName, HeaderValue, IF_RANGE, LAST_MODIFIED, LOCATION, RANGE,
};

use super::{Backend, GetRequest, GetResponse, Range, parse_content_range, parse_unsatisfied_range};
use crate::config::BackToSourceConfig;
use crate::error::{Error, Result};
use crate::proxy::destination::{DestinationGuard, GuardError, GuardedResolver, find_guard_error};

/// The HTTP(S) backend.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    client: reqwest::Client,
    /// Redirects followed per request before giving up.
    max_redirects: usize,
    /// Destinations this backend may reach (the proxy's); `None`: any.
    guard: Option<Arc<DestinationGuard>>,
}

impl HttpBackend {
    /// A client with the configured timeouts and redirect limit.
    pub fn new(config: &BackToSourceConfig) -> Result<Self> {
        Self::build(config, None)
    }

    /// Like [`HttpBackend::new`], reaching only destinations `guard` allows,
    /// on every hop (the proxy's back-to-source): its resolver checks names,
    /// and each hop's URL is checked before it is sent. A refused hop fails
    /// the request for good (`InvalidArgument`, which is not retried).
    pub fn guarded(config: &BackToSourceConfig, guard: Arc<DestinationGuard>) -> Result<Self> {
        Self::build(config, Some(guard))
    }

    fn build(config: &BackToSourceConfig, guard: Option<Arc<DestinationGuard>>) -> Result<Self> {
        darter_common::install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        for cert in load_ca_certs(&config.ca_certs)? {
            builder = builder.add_root_certificate(cert);
        }
        if let Some(guard) = &guard {
            builder = builder.dns_resolver(GuardedResolver(guard.clone()));
        }
        let client = builder
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            // Followed by hand in `get`, so that caller headers stay on the original host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("darter-dfdaemon/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot build http client: {}", error_chain(&e.without_url())))
            })?;
        Ok(Self { client, max_redirects: config.max_redirects, guard })
    }
}

/// The certificates in `back_to_source.ca_certs`; an unreadable or malformed
/// file is an error naming it.
pub fn load_ca_certs(paths: &[std::path::PathBuf]) -> Result<Vec<reqwest::Certificate>> {
    let mut certs = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let field = format!("back_to_source.ca_certs[{i}]");
        let pem = std::fs::read(path)
            .map_err(|e| Error::InvalidArgument(format!("{field}: cannot read {}: {e}", path.display())))?;
        let found = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::InvalidArgument(format!("{field}: {} is not PEM certificates: {e}", path.display())))?;
        if found.is_empty() {
            return Err(Error::InvalidArgument(format!("{field}: no certificate in {}", path.display())));
        }
        certs.extend(found);
    }
    Ok(certs)
}

/// The URL as messages, logs and records show it: no user info, no secret
/// in its query ([`darter_common::secret`], the one place that says what is secret).
pub fn redacted(url: &url::Url) -> darter_common::secret::RedactedUrl {
    darter_common::secret::redact_url(url)
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|_| Error::InvalidArgument(format!("invalid header name {k:?}")))?;
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|_| Error::InvalidArgument(format!("invalid value for header {k}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Our own headers, sent on every hop: `Range`, and `If-Range` with it (an
/// `If-Range` without a `Range` means nothing).
fn own_headers(range: Option<Range>, if_range: Option<&str>) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    if let Some(r) = range {
        let v = match r.end {
            Some(end) => format!("bytes={}-{}", r.start, end),
            None => format!("bytes={}-", r.start),
        };
        map.insert(RANGE, HeaderValue::try_from(v).expect("ascii range"));
        if let Some(validator) = if_range {
            let value = HeaderValue::try_from(validator)
                .map_err(|_| Error::InvalidArgument("invalid If-Range validator".to_string()))?;
            map.insert(IF_RANGE, value);
        }
    }
    Ok(map)
}

/// Same scheme, host and port (the default port counts as given).
fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && a.port_or_known_default() == b.port_or_known_default()
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Where a redirect from `current` points, resolved against it; only
/// http(s) targets are followed.
fn redirect_target(current: &url::Url, headers: &HeaderMap) -> Result<url::Url> {
    let shown = redacted(current);
    let location = headers
        .get(LOCATION)
        .ok_or_else(|| Error::OriginProtocol(format!("{shown}: redirect without a Location")))?
        .to_str()
        .map_err(|_| Error::OriginProtocol(format!("{shown}: redirect with a non-ASCII Location")))?;
    let next = current
        .join(location)
        .map_err(|e| Error::OriginProtocol(format!("{shown}: redirect with an invalid Location: {e}")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Error::OriginProtocol(format!(
            "{shown}: refusing redirect to a {:?} url (only http and https)",
            next.scheme()
        )));
    }
    Ok(next)
}

/// The content's validator for `If-Range`: a strong `ETag` (weak ones may not
/// be used with `If-Range`), else `Last-Modified`.
fn validator(headers: &HeaderMap) -> Option<String> {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::trim);
    text(ETAG)
        .filter(|etag| !etag.is_empty() && !etag.starts_with("W/"))
        .or_else(|| text(LAST_MODIFIED).filter(|lm| !lm.is_empty()))
        .map(str::to_string)
}

impl Backend for HttpBackend {
    fn get(&self, request: GetRequest) -> BoxFuture<'_, Result<GetResponse>> {
        Box::pin(async move {
            let caller = header_map(&request.headers)?;
            let own = own_headers(request.range, request.if_range.as_deref())?;
            let original = request.url;
            let mut url = original.clone();
            // Once a hop leaves the original host the caller's headers stay
            // off every later hop too, even one that comes back.
            let mut with_caller_headers = true;
            let mut redirects = 0;
            let resp = loop {
                let mut headers = if with_caller_headers { caller.clone() } else { HeaderMap::new() };
                headers.extend(own.clone());
                // A refused destination is final (not retried): the policy will not change.
                let refused = |e: &GuardError| match e {
                    GuardError::Refused { .. } => Error::InvalidArgument(format!("{}: {e}", redacted(&url))),
                    GuardError::Unresolved { .. } => Error::OriginUnavailable(format!("{}: {e}", redacted(&url))),
                };
                if let Some(guard) = &self.guard {
                    guard.check_hop(&url).await.map_err(|e| refused(&e))?;
                }
                let resp = self.client.get(url.clone()).headers(headers).send().await.map_err(|e| {
                    match find_guard_error(&e) {
                        Some(e) => refused(e),
                        None => {
                            Error::OriginUnavailable(format!("{}: {}", redacted(&url), error_chain(&e.without_url())))
                        }
                    }
                })?;
                if !is_redirect(resp.status()) {
                    break resp;
                }
                if redirects >= self.max_redirects {
                    return Err(Error::OriginProtocol(format!(
                        "too many redirects (more than {}) from {}",
                        self.max_redirects,
                        redacted(&original)
                    )));
                }
                redirects += 1;
                let next = redirect_target(&url, resp.headers())?;
                if with_caller_headers && !same_origin(&original, &next) {
                    let (from, to) = (redacted(&url), redacted(&next));
                    tracing::debug!(%from, %to, "cross-host redirect: caller headers dropped");
                    with_caller_headers = false;
                }
                url = next;
            };
            let shown = redacted(&url);
            let status = resp.status().as_u16();
            let header =
                |name| resp.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
            let content_range = header(CONTENT_RANGE);
            let validator = validator(resp.headers());
            let content_length = resp.content_length();
            let body = resp
                .bytes_stream()
                .map_err(move |e| {
                    Error::OriginUnavailable(format!("body of {shown} broke: {}", error_chain(&e.without_url())))
                })
                .boxed();
            Ok(GetResponse {
                status,
                content_length,
                content_range: if status == 206 {
                    content_range.as_deref().and_then(parse_content_range)
                } else {
                    None
                },
                unsatisfied_total: if status == 416 {
                    content_range.as_deref().and_then(parse_unsatisfied_range)
                } else {
                    None
                },
                validator,
                body,
            })
        })
    }
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn validator_prefers_a_strong_etag() {
        let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(validator(&headers(&[(ETAG, "\"abc\""), (LAST_MODIFIED, lm)])).as_deref(), Some("\"abc\""));
        assert_eq!(validator(&headers(&[(ETAG, "W/\"abc\""), (LAST_MODIFIED, lm)])).as_deref(), Some(lm));
        assert_eq!(validator(&headers(&[(ETAG, "W/\"abc\"")])), None);
        assert_eq!(validator(&headers(&[])), None);
    }

    #[test]
    fn if_range_goes_only_with_a_range() {
        let range = Some(Range { start: 5, end: None });
        let h = own_headers(range, Some("\"v1\"")).unwrap();
        assert_eq!(h.get(RANGE).unwrap(), "bytes=5-");
        assert_eq!(h.get(IF_RANGE).unwrap(), "\"v1\"");
        assert!(own_headers(None, Some("\"v1\"")).unwrap().is_empty());
        assert!(own_headers(range, Some("bad\nvalue")).is_err());
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = url("http://h/a?x=1");
        assert!(same_origin(&a, &url("http://h:80/b")));
        assert!(same_origin(&a, &url("http://user@h/c")));
        assert!(!same_origin(&a, &url("https://h/a")));
        assert!(!same_origin(&a, &url("http://h:8080/a")));
        assert!(!same_origin(&a, &url("http://h2/a")));
    }

    #[test]
    fn redirect_targets_resolve_and_stay_http() {
        let base = url("http://h/dir/f?sig=secret");
        let loc = |v: &str| headers(&[(LOCATION, v)]);
        assert_eq!(redirect_target(&base, &loc("g")).unwrap().as_str(), "http://h/dir/g");
        assert_eq!(redirect_target(&base, &loc("//other:81/x")).unwrap().as_str(), "http://other:81/x");
        assert_eq!(redirect_target(&base, &loc("https://s3/b?k=v")).unwrap().as_str(), "https://s3/b?k=v");
        for bad in [headers(&[]), loc("ftp://h/f"), loc("file:///etc/passwd"), loc("http://[::1")] {
            let e = redirect_target(&base, &bad).unwrap_err();
            assert!(matches!(e, Error::OriginProtocol(_)), "{e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn redacted_drops_userinfo_and_secrets() {
        assert_eq!(
            redacted(&url("https://u:p@h/a/b?X-Amz-Signature=s&v=1#f")).as_str(),
            "https://h/a/b?X-Amz-Signature=REDACTED&v=1"
        );
    }
}
