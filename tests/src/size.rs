//! Human-readable byte sizes for command-line options (benchmarks, the sandbox).

/// Parses `1GiB`, `64MiB`, `300KiB`, `2TiB`, `512B` or plain bytes (`4096`).
/// Units are binary and case-insensitive; whitespace between number and unit
/// is allowed. Decimal units (`MB`) are rejected rather than guessed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("invalid size {text:?}: expected a number such as 64MiB"));
    }
    let number: u64 = digits.parse().map_err(|e| format!("invalid size {text:?}: {e}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "tib" => 40,
        other => {
            return Err(format!("invalid size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB or TiB)"));
        }
    };
    number.checked_mul(1u64 << shift).ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Formats `bytes` with the largest binary unit that divides it exactly, so
/// that `parse_size(&format_size(n)) == Ok(n)`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("300KiB"), Ok(300 << 10));
        assert_eq!(parse_size("300 kib"), Ok(300 << 10));
        assert_eq!(parse_size("12345"), Ok(12345));
        assert_eq!(parse_size("7B"), Ok(7));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(parse_size("").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("10MB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999TiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn formats_round_trip() {
        for n in [0, 1, 1000, 1 << 10, 3 << 20, 1 << 30, (1 << 30) + 1] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(1 << 30), "1GiB");
    }
}
