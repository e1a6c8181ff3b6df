//! Piece geometry: the piece length a task uses and the byte range of each piece.

/// Smallest piece length (256 KiB).
pub const MIN_PIECE_LENGTH: u64 = 256 * 1024;
/// Largest piece length (64 MiB).
pub const MAX_PIECE_LENGTH: u64 = 64 * 1024 * 1024;
/// Piece length used when the content length is unknown (streamed origin).
pub const UNKNOWN_LENGTH_PIECE_LENGTH: u64 = 4 * 1024 * 1024;

/// Most pieces a task may have (so counts fit `u32` with room to spare and
/// per-piece state stays bounded): 64 TiB at the largest piece length.
pub const MAX_PIECE_COUNT: u32 = 1 << 20;

/// Checks that a content length and piece length make a task this system can
/// hold: piece length within [`MIN_PIECE_LENGTH`, `MAX_PIECE_LENGTH`] and at
/// most [`MAX_PIECE_COUNT`] pieces. The error says which limit was hit.
pub fn check_geometry(content_length: u64, piece_length: u64) -> Result<u32, String> {
    if !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&piece_length) {
        return Err(format!("piece length {piece_length} is outside [{MIN_PIECE_LENGTH}, {MAX_PIECE_LENGTH}]"));
    }
    let count = content_length.div_ceil(piece_length);
    if count > MAX_PIECE_COUNT as u64 {
        return Err(format!(
            "content length {content_length} needs {count} pieces of {piece_length} bytes; the limit is {MAX_PIECE_COUNT}"
        ));
    }
    Ok(count as u32)
}

/// Piece length for a content length: `next_pow2(len / 1024)` clamped to
/// [256 KiB, 64 MiB], so small files get many pieces (pipelining) and huge
/// ones a bounded count. `None` (unknown length) gets a fixed 4 MiB.
pub fn piece_length_for(content_length: Option<u64>) -> u64 {
    match content_length {
        None => UNKNOWN_LENGTH_PIECE_LENGTH,
        Some(len) => (len / 1024).max(1).next_power_of_two().clamp(MIN_PIECE_LENGTH, MAX_PIECE_LENGTH),
    }
}

/// Number of pieces of a content (0 for empty content).
pub fn piece_count(content_length: u64, piece_length: u64) -> u32 {
    content_length.div_ceil(piece_length) as u32
}

/// Offset and length of piece `number`.
pub fn piece_range(number: u32, content_length: u64, piece_length: u64) -> (u64, u64) {
    let offset = number as u64 * piece_length;
    let length = piece_length.min(content_length.saturating_sub(offset));
    (offset, length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_follows_the_rule() {
        assert_eq!(piece_length_for(Some(0)), MIN_PIECE_LENGTH);
        assert_eq!(piece_length_for(Some(10 << 20)), MIN_PIECE_LENGTH);
        assert_eq!(piece_length_for(Some(1 << 30)), 1 << 20);
        assert_eq!(piece_length_for(Some((1 << 30) + (1 << 20))), 2 << 20);
        assert_eq!(piece_length_for(Some(1 << 40)), MAX_PIECE_LENGTH);
        assert_eq!(piece_length_for(None), UNKNOWN_LENGTH_PIECE_LENGTH);
    }

    #[test]
    fn geometry_limits() {
        assert_eq!(check_geometry(10 << 20, MIN_PIECE_LENGTH), Ok(40));
        assert!(check_geometry(10, 1).is_err());
        assert!(check_geometry(10, 0).is_err());
        assert!(check_geometry(u64::MAX, MAX_PIECE_LENGTH).is_err());
        assert!(check_geometry((MAX_PIECE_COUNT as u64) * MAX_PIECE_LENGTH, MAX_PIECE_LENGTH).is_ok());
    }

    #[test]
    fn ranges_cover_the_content() {
        assert_eq!(piece_count(0, 4), 0);
        assert_eq!(piece_count(9, 4), 3);
        assert_eq!(piece_range(2, 9, 4), (8, 1));
        assert_eq!(piece_range(0, 9, 4), (0, 4));
    }
}
