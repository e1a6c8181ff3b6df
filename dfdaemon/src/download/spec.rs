//! A download request, validated once at the boundary (from the proto
//! `Download`) so the rest of the daemon never handles unchecked strings.

use std::path::PathBuf;
use std::time::Duration;

use darter_common::digest::Digest;
use darter_common::limits::RequestLimits;
use darter_common::task_id::TaskId;
use darter_proto::common::v1 as pb;

use crate::error::Error;

/// A validated download.
#[derive(Debug, Clone)]
pub struct DownloadSpec {
    /// Source URL.
    pub url: url::Url,
    /// Expected whole-content digest.
    pub digest: Option<Digest>,
    /// Task tag.
    pub tag: String,
    /// Task application.
    pub application: String,
    /// Headers passed to the origin, in a stable order.
    pub headers: Vec<(String, String)>,
    /// Absolute output path.
    pub output: Option<PathBuf>,
    /// Timeout requested by the caller.
    pub timeout: Option<Duration>,
    /// Never fetch from the origin.
    pub disable_back_to_source: bool,
    /// Forced piece length.
    pub piece_length: Option<u64>,
    /// The task ID derived from the above.
    pub task_id: TaskId,
}

/// Headers a caller may not set: the daemon owns ranges, conditions, framing
/// and encodings, and a caller's choice would change the bytes cached for a
/// task that other callers share. (`If-*` headers are refused too.)
const RESERVED_HEADERS: &[&str] = &[
    "range",
    "accept-encoding",
    "te",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "proxy-connection",
    "expect",
];

/// Largest piece length a caller may force (64 MiB).
const MAX_FORCED_PIECE_LENGTH: u64 = darter_common::piece::MAX_PIECE_LENGTH;

impl DownloadSpec {
    /// Validates a download from the network (dfget's socket, a seed
    /// trigger): its size against `limits` first, then every field.
    pub fn from_proto(d: pb::Download, limits: &RequestLimits) -> Result<Self, Error> {
        check_limits(limits, &d.url, d.request_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        Self::try_from(d)
    }

    /// Checks this download's URL and headers against `limits`.
    pub fn check_limits(&self, limits: &RequestLimits) -> Result<(), Error> {
        check_limits(limits, self.url.as_str(), self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

fn check_limits<'a>(
    limits: &RequestLimits,
    url: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), Error> {
    limits.check(url, headers).map_err(|e| Error::InvalidArgument(format!("{e} (download.{})", e.field())))
}

impl TryFrom<pb::Download> for DownloadSpec {
    type Error = Error;

    /// Validates every field (without size limits: see [`DownloadSpec::from_proto`]).
    /// Error messages never repeat the URL or a header value (they may be secrets).
    fn try_from(d: pb::Download) -> Result<Self, Error> {
        let url = url::Url::parse(&d.url).map_err(|e| Error::InvalidArgument(format!("invalid url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidArgument(format!(
                "unsupported url scheme {:?} (supported: http, https)",
                url.scheme()
            )));
        }
        let digest = match d.digest.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<Digest>().map_err(|e| Error::InvalidArgument(e.to_string()))?),
        };
        let output = match d.output_path.as_str() {
            "" => None,
            p => {
                let p = PathBuf::from(p);
                if !p.is_absolute() {
                    return Err(Error::InvalidArgument(format!("output path {} must be absolute", p.display())));
                }
                if p.file_name().is_none() {
                    return Err(Error::InvalidArgument(format!("output path {} names no file", p.display())));
                }
                Some(p)
            }
        };
        let piece_length = match d.piece_length {
            0 => None,
            n if !(darter_common::piece::MIN_PIECE_LENGTH..=MAX_FORCED_PIECE_LENGTH).contains(&n) => {
                return Err(Error::InvalidArgument(format!("piece length {n} is outside [256KiB, 64MiB]")));
            }
            n => Some(n),
        };
        let mut headers: Vec<(String, String)> = d.request_headers.into_iter().collect();
        headers.sort();
        for (k, v) in &headers {
            http::HeaderName::try_from(k.as_str())
                .map_err(|_| Error::InvalidArgument(format!("invalid header name {k:?}")))?;
            http::HeaderValue::try_from(v.as_str())
                .map_err(|_| Error::InvalidArgument(format!("invalid value for header {k}")))?;
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) || k.to_ascii_lowercase().starts_with("if-")
            {
                return Err(Error::InvalidArgument(format!(
                    "header {k} is managed by dfdaemon (it would change the bytes stored for everyone)"
                )));
            }
        }
        let task_id = TaskId::for_download(url.as_str(), digest.as_ref(), &d.tag, &d.application)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(Self {
            url,
            digest,
            tag: d.tag,
            application: d.application,
            headers,
            output,
            timeout: (d.timeout_ms > 0).then(|| Duration::from_millis(d.timeout_ms)),
            disable_back_to_source: d.disable_back_to_source,
            piece_length,
            task_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(url: &str) -> pb::Download {
        pb::Download { url: url.into(), ..Default::default() }
    }

    #[test]
    fn validates_every_field() {
        assert!(DownloadSpec::try_from(download("http://h/f")).is_ok());
        assert!(DownloadSpec::try_from(download("ftp://h/f")).is_err());
        assert!(DownloadSpec::try_from(download("nope")).is_err());
        let mut d = download("http://h/f");
        d.digest = Some("sha256:1234".into());
        assert!(DownloadSpec::try_from(d).is_err());
        let mut d = download("http://h/f");
        d.output_path = "relative/out".into();
        assert!(DownloadSpec::try_from(d).is_err());
        let mut d = download("http://h/f");
        d.request_headers.insert("Bad Name".into(), "v".into());
        assert!(DownloadSpec::try_from(d).is_err());
        for bad in [1 << 40, 1] {
            let mut d = download("http://h/f");
            d.piece_length = bad;
            assert!(DownloadSpec::try_from(d).is_err(), "{bad}");
        }
        for reserved in ["Range", "accept-encoding", "If-None-Match", "Host"] {
            let mut d = download("http://h/f");
            d.request_headers.insert(reserved.into(), "x".into());
            assert!(DownloadSpec::try_from(d).is_err(), "{reserved}");
        }
    }

    #[test]
    fn oversized_requests_are_refused_before_anything_else() {
        let limits = RequestLimits::default();
        let long = format!("http://h/f?sig={}", "s".repeat(10_000));
        let e = DownloadSpec::from_proto(download(&long), &limits).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.ends_with("the url is 10015 bytes, more than the limit of 8192 bytes (download.max_url_bytes)")),
            "{e}"
        );
        assert!(!e.to_string().contains("sss"), "the url is not repeated: {e}");
        let mut d = download("http://h/f");
        d.request_headers = (0..33).map(|i| (format!("x-{i}"), "v".into())).collect();
        assert!(DownloadSpec::from_proto(d, &limits).is_err());
        assert!(DownloadSpec::from_proto(download("http://h/f"), &limits).is_ok());
        let e = DownloadSpec::try_from(download("http://[::1/f?sig=hunter2")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn digest_becomes_the_task_id() {
        let mut d = download("http://h/f");
        let digest = format!("sha256:{}", "b".repeat(64));
        d.digest = Some(digest.clone());
        assert_eq!(DownloadSpec::try_from(d).unwrap().task_id.as_str(), digest);
    }
}
