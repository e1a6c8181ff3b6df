//! What is secret in a URL or a request header, and how it is shown instead:
//! the one place every binary asks (dfdaemon's `task.json`, `StatTask`, logs
//! and error messages; the scheduler's `StatTask`).
//!
//! Signed URLs (S3, GCS, OSS, Azure SAS, registries' redirect targets) carry
//! their credentials in query parameters; callers carry theirs in headers
//! (`Authorization`, cookies, API keys). Both are needed by the member that
//! fetches from the origin and nowhere else, so they are never stored or
//! answered in clear: a URL is shown as [`RedactedUrl`] (no user info, no
//! fragment, the value of every secret-looking query parameter replaced by
//! [`REDACTED`]) and a header value by [`REDACTED`].
//!
//! A name is secret when it contains one of [`SECRET_NAME_FRAGMENTS`]
//! (case-insensitive): deliberately broad, since showing `keyword=REDACTED`
//! costs nothing and showing an unknown provider's `sig=` would leak it.

use std::fmt;

/// What a secret value is shown as.
pub const REDACTED: &str = "REDACTED";

/// Fragments of query parameter and header names that mark a credential
/// (`X-Amz-Signature`, `X-Goog-Credential`, `OSSAccessKeyId`,
/// `security-token`, Azure's `sig`, `access_token`, `api_key`, `X-Auth-Token`,
/// `Authorization`, `Cookie`, ...), compared case-insensitively.
pub const SECRET_NAME_FRAGMENTS: &[&str] =
    &["sig", "token", "key", "secret", "auth", "cred", "pass", "pwd", "access", "session", "cookie", "jwt"];

fn looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAME_FRAGMENTS.iter().any(|f| lower.contains(f))
}

/// Whether the value of query parameter `name` is a secret.
pub fn is_secret_query_param(name: &str) -> bool {
    looks_secret(name)
}

/// Whether the value of header `name` is a secret (`Authorization`,
/// `Proxy-Authorization`, `Cookie`, `X-Api-Key`, `X-Amz-Security-Token`, ...).
pub fn is_secret_header(name: &str) -> bool {
    looks_secret(name)
}

/// A URL with its secrets taken out: safe to store, log and answer. Made
/// only by [`redact_url`] / [`redact_url_str`], so a function that takes one
/// cannot be handed a signed URL by mistake.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// The redacted URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The redacted URL, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({})", self.0)
    }
}

/// `url` without user info and fragment, each secret query parameter's
/// value replaced by [`REDACTED`] (names, order and other values kept).
pub fn redact_url(url: &url::Url) -> RedactedUrl {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_query_param(&k) { REDACTED.to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        if pairs.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    RedactedUrl(u.to_string())
}

/// [`redact_url`] of a URL given as text; text that is not a URL keeps
/// nothing but a note that it was not one (it may hold anything).
pub fn redact_url_str(raw: &str) -> RedactedUrl {
    match url::Url::parse(raw) {
        Ok(u) => redact_url(&u),
        Err(_) => RedactedUrl("(not a url)".to_owned()),
    }
}

/// Headers as they may be shown: secret values replaced by [`REDACTED`].
pub fn redact_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| (k.to_owned(), if is_secret_header(k) { REDACTED.to_owned() } else { v.to_owned() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(s: &str) -> String {
        redact_url_str(s).into_string()
    }

    #[test]
    fn signed_urls_lose_their_signatures_and_keep_their_shape() {
        assert_eq!(
            shown(
                "https://u:p@Bucket.s3.example/a/b?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef&X-Amz-Expires=60&v=2#frag"
            ),
            "https://bucket.s3.example/a/b?X-Amz-Algorithm=AWS4&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Expires=60&v=2"
        );
        assert_eq!(
            shown("https://acct.blob.example/c/o?sv=2022&se=2030&sp=r&sig=c2VjcmV0"),
            "https://acct.blob.example/c/o?sv=2022&se=2030&sp=r&sig=REDACTED"
        );
        for secret in
            ["GoogleAccessId", "x-goog-signature", "OSSAccessKeyId", "security-token", "access_token", "api_key"]
        {
            let s = shown(&format!("http://h/f?{secret}=hunter2"));
            assert!(!s.contains("hunter2"), "{secret}: {s}");
        }
        assert_eq!(shown("http://h/f?ns=docker.io"), "http://h/f?ns=docker.io", "routing parameters stay");
        assert_eq!(shown("http://h/f"), "http://h/f");
        assert_eq!(shown("not a url ?sig=hunter2"), "(not a url)");
    }

    #[test]
    fn secret_headers_are_named_broadly() {
        for h in ["Authorization", "proxy-authorization", "Cookie", "X-Api-Key", "X-Amz-Security-Token", "X-Auth-Token"]
        {
            assert!(is_secret_header(h), "{h}");
        }
        for h in ["Accept", "User-Agent", "X-Request-Id"] {
            assert!(!is_secret_header(h), "{h}");
        }
        assert_eq!(
            redact_headers([("Authorization", "Bearer x"), ("Accept", "*/*")]),
            [("Authorization".to_owned(), REDACTED.to_owned()), ("Accept".to_owned(), "*/*".to_owned())]
        );
    }
}
