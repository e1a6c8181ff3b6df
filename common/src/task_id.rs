//! Task IDs (ARCHITECTURE.md section 3).
//!
//! Content with a known digest is addressed by that digest (`sha256:<hex>`), so
//! the same blob from two registries is one task. Otherwise the ID is the sha256
//! (64 hex chars) over the normalised URL, the tag and the application. Task IDs
//! travel over the network and name files on disk, so [`TaskId::parse`] accepts
//! only those two shapes: nothing path-like ever gets through.

use std::fmt;

use crate::digest::Digest;

/// A validated task ID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

/// Why a task ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskIdError {
    /// Neither `sha256:<64 hex>` nor `<64 hex>`.
    #[error("invalid task id {0:?}: expected sha256:<64 hex> or 64 hex characters")]
    Invalid(String),
    /// The URL did not parse.
    #[error("invalid url {url}: {reason}")]
    Url {
        /// The URL as given, redacted (`crate::secret`): errors are logged.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// Query parameters that only sign or route a request and so must not split one
/// object into several tasks (compared case-insensitively).
const VOLATILE_QUERY_PARAMS: &[&str] = &[
    // containerd's mirror routing
    "ns",
    // AWS S3 presigned URLs (v2 and v4)
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
    "awsaccesskeyid",
    // GCS signed URLs
    "x-goog-algorithm",
    "x-goog-credential",
    "x-goog-date",
    "x-goog-expires",
    "x-goog-signedheaders",
    "x-goog-signature",
    "googleaccessid",
    // Aliyun OSS
    "ossaccesskeyid",
    "security-token",
    // shared by S3 v2, GCS v2 and OSS
    "expires",
    "signature",
];

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TaskId {
    /// Validates a task ID received from outside.
    pub fn parse(s: &str) -> Result<Self, TaskIdError> {
        if is_hex64(s) {
            return Ok(Self(s.to_string()));
        }
        match s.parse::<Digest>() {
            Ok(d) => Ok(Self(d.to_string())),
            Err(_) => Err(TaskIdError::Invalid(s.to_string())),
        }
    }

    /// The ID of a digest-addressed task.
    pub fn from_digest(digest: &Digest) -> Self {
        Self(digest.to_string())
    }

    /// The ID of a download: its digest when known, else sha256 over the
    /// normalised URL, tag and application.
    pub fn for_download(url: &str, digest: Option<&Digest>, tag: &str, application: &str) -> Result<Self, TaskIdError> {
        let normalised = normalise_url(url)?;
        if let Some(d) = digest {
            return Ok(Self::from_digest(d));
        }
        let mut h = crate::digest::Hasher::new();
        for part in [normalised.as_str(), tag, application] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        Ok(Self(h.finish().hex()))
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name safe to use as a file name: `sha256:<hex>` becomes `sha256-<hex>`.
    pub fn file_name(&self) -> String {
        self.0.replace(':', "-")
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0)
    }
}

/// Normalises a URL for task identity: scheme and host lowercased, default
/// port and fragment dropped, signing/routing query parameters removed, the
/// remaining parameters sorted.
pub fn normalise_url(raw: &str) -> Result<String, TaskIdError> {
    let shown = || crate::secret::redact_url_str(raw).into_string();
    let mut url = url::Url::parse(raw).map_err(|e| TaskIdError::Url { url: shown(), reason: e.to_string() })?;
    if url.host_str().is_none() {
        return Err(TaskIdError::Url { url: shown(), reason: "no host".into() });
    }
    url.set_fragment(None);
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !VOLATILE_QUERY_PARAMS.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_addressed_tasks_share_an_id() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let a = TaskId::for_download("https://r1.example/v2/x/blobs/sha256:aa", Some(&d), "", "").unwrap();
        let b = TaskId::for_download("https://r2.example/v2/y/blobs/sha256:aa", Some(&d), "t", "app").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), d.to_string());
    }

    #[test]
    fn signatures_and_ns_do_not_split_tasks() {
        let a =
            TaskId::for_download("https://B.example:443/o?X-Amz-Signature=1&b=2&a=1&ns=docker.io#frag", None, "", "")
                .unwrap();
        let b = TaskId::for_download("https://b.example/o?a=1&b=2&X-Amz-Signature=2", None, "", "").unwrap();
        assert_eq!(a, b);
        let c = TaskId::for_download("https://b.example/o?a=1&b=3", None, "", "").unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn tag_and_application_split_tasks() {
        let a = TaskId::for_download("http://h/f", None, "", "").unwrap();
        let b = TaskId::for_download("http://h/f", None, "v2", "").unwrap();
        let c = TaskId::for_download("http://h/f", None, "", "v2").unwrap();
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert!(is_hex64(a.as_str()));
    }

    #[test]
    fn parse_refuses_path_like_ids() {
        for bad in ["../etc/passwd", "", "sha256:../../x", &"a".repeat(63), &"G".repeat(64), "sha256:", "/abs"] {
            assert!(TaskId::parse(bad).is_err(), "{bad}");
        }
        assert!(TaskId::parse(&"0".repeat(64)).is_ok());
        assert_eq!(
            TaskId::parse(&format!("sha256:{}", "f".repeat(64))).unwrap().file_name(),
            format!("sha256-{}", "f".repeat(64))
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(TaskId::for_download("not a url", None, "", "").is_err());
        assert!(TaskId::for_download("file:///etc/passwd", None, "", "").is_err());
    }
}
