//! HTTP(S) backend over reqwest (rustls): redirects followed (credentials are
//! dropped on a cross-host redirect, as registries' blob-storage redirects
//! need), request headers passed through, body streamed.

use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{CONTENT_RANGE, HeaderMap, HeaderName, HeaderValue, RANGE};

use super::{Backend, GetRequest, GetResponse, parse_content_range, parse_unsatisfied_range};
use crate::config::BackToSourceConfig;
use crate::error::{Error, Result};

/// The HTTP(S) backend.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    client: reqwest::Client,
}

impl HttpBackend {
    /// A client with the configured timeouts and redirect limit.
    pub fn new(config: &BackToSourceConfig) -> Result<Self> {
        darter_common::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(config.max_redirects))
            .user_agent(concat!("darter-dfdaemon/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot build http client: {e}")))?;
        Ok(Self { client })
    }
}

/// The URL without user info, for messages and logs.
pub fn redacted(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
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

impl Backend for HttpBackend {
    fn get(&self, request: GetRequest) -> BoxFuture<'_, Result<GetResponse>> {
        Box::pin(async move {
            let mut headers = header_map(&request.headers)?;
            if let Some(r) = request.range {
                let v = match r.end {
                    Some(end) => format!("bytes={}-{}", r.start, end),
                    None => format!("bytes={}-", r.start),
                };
                headers.insert(RANGE, HeaderValue::try_from(v).expect("ascii range"));
            }
            let shown = redacted(&request.url);
            let resp = self
                .client
                .get(request.url)
                .headers(headers)
                .send()
                .await
                .map_err(|e| Error::OriginUnavailable(format!("{shown}: {}", error_chain(&e))))?;
            let status = resp.status().as_u16();
            let header =
                |name| resp.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
            let content_range = header(CONTENT_RANGE);
            let content_length = resp.content_length();
            let body = resp
                .bytes_stream()
                .map_err(move |e| Error::OriginUnavailable(format!("body of {shown} broke: {}", error_chain(&e))))
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
                body,
            })
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
