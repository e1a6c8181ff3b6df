//! The one `Range` form clients of a registry mirror send: a single byte range
//! (`bytes=N-`, `bytes=N-M`, `bytes=-N`). Several ranges are answered with the
//! whole content, as RFC 9110 allows.

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// The whole body (no header, or one the server may ignore).
    Full,
    /// Bytes `start..end` (end exclusive).
    Part { start: u64, end: u64 },
    /// Nothing of it can be served (416).
    Unsatisfiable,
}

/// Interprets a `Range` header value against a body of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> RangeAsk {
    let Some(value) = header else { return RangeAsk::Full };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeAsk::Full };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAsk::Full };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => last.parse::<u64>().ok().map(|n| (len.saturating_sub(n), len, n == 0)),
        (false, true) => first.parse::<u64>().ok().map(|s| (s, len, false)),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(len), false)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeAsk::Full,
        Some((_, _, true)) => RangeAsk::Unsatisfiable,
        Some((start, _, _)) if start >= len => RangeAsk::Unsatisfiable,
        Some((start, end, _)) => RangeAsk::Part { start, end },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse(None, 100), RangeAsk::Full);
        assert_eq!(parse(Some("bytes=10-"), 100), RangeAsk::Part { start: 10, end: 100 });
        assert_eq!(parse(Some("bytes=10-19"), 100), RangeAsk::Part { start: 10, end: 20 });
        assert_eq!(parse(Some("bytes=90-200"), 100), RangeAsk::Part { start: 90, end: 100 });
        assert_eq!(parse(Some("bytes=-10"), 100), RangeAsk::Part { start: 90, end: 100 });
        assert_eq!(parse(Some("bytes=-200"), 100), RangeAsk::Part { start: 0, end: 100 });
        assert_eq!(parse(Some("bytes=0-0"), 100), RangeAsk::Part { start: 0, end: 1 });
    }

    #[test]
    fn odd_ranges() {
        assert_eq!(parse(Some("bytes=100-"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-1"), 100), RangeAsk::Full);
        assert_eq!(parse(Some("bytes=0-1,5-6"), 100), RangeAsk::Full);
        assert_eq!(parse(Some("items=0-1"), 100), RangeAsk::Full);
        assert_eq!(parse(Some("bytes=x-"), 100), RangeAsk::Full);
    }
}
