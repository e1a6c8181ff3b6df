//! Size limits on what a download request may carry, checked the same way
//! where it enters dfdaemon (the dfget socket, seed triggers, the proxy) and
//! the scheduler (`register`), before anything is parsed or kept: a URL of
//! megabytes, or thousands of headers, is refused at the door instead of
//! being held for an hour.

/// Default of `max_url_bytes` (8 KiB: longer than any signed URL seen in
/// practice, which stay under 4 KiB).
pub const DEFAULT_MAX_URL_BYTES: u64 = 8 * 1024;
/// Default of `max_header_count`.
pub const DEFAULT_MAX_HEADER_COUNT: usize = 32;
/// Default of `max_header_bytes` (names and values together).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;

/// The limits; each binary fills them from its own config fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest URL, in bytes.
    pub max_url_bytes: u64,
    /// Most request headers.
    pub max_header_count: usize,
    /// Most bytes of header names and values together.
    pub max_header_bytes: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// A limit a request passed; `Display` says by how much (never the URL or a
/// header value: they may be secrets, and they are what is too large).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The URL is longer than `max_url_bytes`.
    #[error("the url is {len} bytes, more than the limit of {max} bytes")]
    Url {
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// More headers than `max_header_count`.
    #[error("{count} request headers, more than the limit of {max}")]
    HeaderCount {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Header names and values longer than `max_header_bytes` together.
    #[error("request headers of {len} bytes, more than the limit of {max} bytes")]
    HeaderBytes {
        /// Their length.
        len: u64,
        /// The limit.
        max: u64,
    },
}

impl LimitError {
    /// The name of the limit's config field (`max_url_bytes`, ...), for the
    /// binary to put after its section.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Url { .. } => "max_url_bytes",
            Self::HeaderCount { .. } => "max_header_count",
            Self::HeaderBytes { .. } => "max_header_bytes",
        }
    }
}

impl RequestLimits {
    /// Checks a request's URL and headers.
    pub fn check<'a>(
        &self,
        url: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), LimitError> {
        if url.len() as u64 > self.max_url_bytes {
            return Err(LimitError::Url { len: url.len() as u64, max: self.max_url_bytes });
        }
        let (mut count, mut len) = (0usize, 0u64);
        for (name, value) in headers {
            count += 1;
            len += (name.len() + value.len()) as u64;
        }
        if count > self.max_header_count {
            return Err(LimitError::HeaderCount { count, max: self.max_header_count });
        }
        if len > self.max_header_bytes {
            return Err(LimitError::HeaderBytes { len, max: self.max_header_bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_is_named_when_passed() {
        let l = RequestLimits { max_url_bytes: 10, max_header_count: 2, max_header_bytes: 8 };
        assert!(l.check("http://h/", [("a", "b")]).is_ok());
        let e = l.check("http://host/long?sig=secret", []).unwrap_err();
        assert_eq!(
            (e.to_string().as_str(), e.field()),
            ("the url is 27 bytes, more than the limit of 10 bytes", "max_url_bytes")
        );
        let e = l.check("http://h/", [("a", "1"), ("b", "2"), ("c", "3")]).unwrap_err();
        assert_eq!(e, LimitError::HeaderCount { count: 3, max: 2 });
        let e = l.check("http://h/", [("authorization", "x")]).unwrap_err();
        assert_eq!((e, e.field()), (LimitError::HeaderBytes { len: 14, max: 8 }, "max_header_bytes"));
    }
}
