//! Origin backends, chosen by URL scheme. Only HTTP(S) exists today; S3, OSS
//! and the like slot in as further [`Backend`] implementations.

mod http;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use self::http::{HttpBackend, error_chain, load_ca_certs, redacted};
use crate::config::BackToSourceConfig;
use crate::error::{Error, Result};

/// A byte range to ask for: `start..=end` (`end` open when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive.
    pub end: Option<u64>,
}

/// One GET against the origin.
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// The URL.
    pub url: url::Url,
    /// Headers passed through to the origin.
    pub headers: Vec<(String, String)>,
    /// Range to ask for, if any.
    pub range: Option<Range>,
    /// `If-Range` validator (an ETag or Last-Modified from an earlier
    /// response): if the content changed since, the origin answers 200 with
    /// the whole new content instead of 206.
    pub if_range: Option<String>,
}

/// The origin's answer, with the body still to be read.
pub struct GetResponse {
    /// HTTP status (after redirects).
    pub status: u16,
    /// `Content-Length` of this response.
    pub content_length: Option<u64>,
    /// `Content-Range` of a 206: `(start, end inclusive, total if known)`.
    pub content_range: Option<(u64, u64, Option<u64>)>,
    /// `Content-Range: bytes */total` of a 416.
    pub unsatisfied_total: Option<u64>,
    /// The content's validator: the strong `ETag` if there is one, else
    /// `Last-Modified`; used as `If-Range` by later requests.
    pub validator: Option<String>,
    /// Body chunks; an error means the connection broke.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for GetResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResponse")
            .field("status", &self.status)
            .field("content_length", &self.content_length)
            .field("content_range", &self.content_range)
            .finish_non_exhaustive()
    }
}

/// Fetches bytes from an origin.
pub trait Backend: Send + Sync {
    /// Sends one GET; errors are connection-level (status codes come back in the response).
    fn get(&self, request: GetRequest) -> BoxFuture<'_, Result<GetResponse>>;
}

/// Backends by URL scheme.
#[derive(Clone)]
pub struct Backends {
    by_scheme: HashMap<&'static str, Arc<dyn Backend>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").field("schemes", &self.by_scheme.keys().collect::<Vec<_>>()).finish()
    }
}

impl Backends {
    /// The built-in backends.
    pub fn new(config: &BackToSourceConfig) -> Result<Self> {
        let http: Arc<dyn Backend> = Arc::new(HttpBackend::new(config)?);
        let mut by_scheme = HashMap::new();
        by_scheme.insert("http", http.clone());
        by_scheme.insert("https", http);
        Ok(Self { by_scheme })
    }

    /// The backend for a URL.
    pub fn for_url(&self, url: &url::Url) -> Result<Arc<dyn Backend>> {
        self.by_scheme.get(url.scheme()).cloned().ok_or_else(|| {
            let mut known: Vec<_> = self.by_scheme.keys().copied().collect();
            known.sort();
            Error::InvalidArgument(format!(
                "unsupported url scheme {:?} (supported: {})",
                url.scheme(),
                known.join(", ")
            ))
        })
    }
}

/// Parses `Content-Range: bytes a-b/total` (total may be `*`).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b, total))
}

/// Parses `Content-Range: bytes */total`.
pub fn parse_unsatisfied_range(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes */")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-0/10"), Some((0, 0, Some(10))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_unsatisfied_range("bytes */0"), Some(0));
    }
}
