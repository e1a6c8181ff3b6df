//! The request path is taken as it was sent, never normalised: a path with a
//! dot segment (`.`, `..`, also percent-encoded as `%2e` in any case or mix)
//! or an encoded separator (`%2f`, `%5c`) or a backslash is refused with 400
//! before anything looks at it. URL parsers resolve `..` when they build the
//! upstream URL (`/v2/../x` becomes `/x`), so a path checked first and
//! resolved later could leave the registry API it was checked against; and
//! an encoded separator or a `..;` would be resolved by some upstreams.
//! Clients remove dot segments before sending (RFC 3986 §5.2.4), so no
//! honest request is refused. A pure function, so a fuzz target can call it.

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `.` or `..` segment, however encoded (the segment as sent).
    #[error("path segment {0:?} is a dot segment; send the path with dot segments removed")]
    DotSegment(String),
    /// `%2f` or `%5c` (an encoded `/` or `\`) in a segment (the segment as sent).
    #[error("path segment {0:?} has an encoded slash or backslash")]
    EncodedSeparator(String),
    /// A backslash, which some parsers take for a slash.
    #[error("the path has a backslash")]
    Backslash,
}

/// Checks a request path as sent (without the query).
pub fn check_path(path: &str) -> Result<(), PathError> {
    for segment in path.split('/') {
        if segment.contains('\\') {
            return Err(PathError::Backslash);
        }
        let lower = segment.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(PathError::EncodedSeparator(segment.to_owned()));
        }
        // `..;x` is `..` to servers that take `;` as a parameter separator.
        let name = lower.split(';').next().unwrap_or_default().replace("%2e", ".");
        if name == "." || name == ".." {
            return Err(PathError::DotSegment(segment.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass() {
        for ok in [
            "/",
            "/v2/",
            "/v2/library/alpine/manifests/3.20",
            "/v2/a.b/c..d/blobs/sha256:00",
            "/v2/x/.hidden/...",
            "/v2/x/a%2e",
            "/v2/x/%2ea",
            "/files/name%20with%20space",
            "",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn dot_segments_are_refused_however_encoded() {
        for bad in [
            "/v2/../x",
            "/v2/./x",
            "/v2/..",
            "/..",
            "/v2/%2e%2e/x",
            "/v2/%2E%2e/x",
            "/v2/%2E%2E/x",
            "/v2/.%2e/x",
            "/v2/%2e./x",
            "/v2/%2e/x",
            "/v2/..;/x",
            "/v2/..;foo=1/x",
        ] {
            assert!(matches!(check_path(bad), Err(PathError::DotSegment(_))), "{bad}: {:?}", check_path(bad));
        }
    }

    #[test]
    fn encoded_separators_and_backslashes_are_refused() {
        for bad in ["/v2/..%2fx", "/v2/a%2Fb", "/v2/..%5cx", "/v2/a%5C"] {
            assert!(matches!(check_path(bad), Err(PathError::EncodedSeparator(_))), "{bad}");
        }
        assert_eq!(check_path("/v2/..\\x"), Err(PathError::Backslash));
        assert_eq!(
            check_path("/v2/%2e%2e/x").unwrap_err().to_string(),
            "path segment \"%2e%2e\" is a dot segment; send the path with dot segments removed"
        );
    }
}
