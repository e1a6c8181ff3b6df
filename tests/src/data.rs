//! Deterministic test data and digests.
//!
//! The generator is SplitMix64, which is counter based: word `i` of a stream
//! depends only on the seed and `i`. That lets [`write_random_file`] stream a
//! 1 GiB file in chunks and still produce exactly the bytes [`random_bytes`]
//! would, so tests can compare the two.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Chunk size used by [`write_random_file`]; a multiple of 8 so every chunk
/// starts on a generator word boundary.
const FILE_CHUNK: usize = 4 << 20;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Returns `len` pseudo-random bytes determined only by `seed`.
///
/// Fast enough for large fixtures (300 MiB in well under a second in release).
/// The same `(len, seed)` always yields the same bytes, and a shorter output
/// is a prefix of a longer one with the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut buf = vec![0u8; len];
    fill_random(&mut buf, seed, 0);
    Bytes::from(buf)
}

/// Fills `buf` with the generator stream for `seed`, starting at word
/// `first_word` (the stream's byte offset divided by 8).
fn fill_random(buf: &mut [u8], seed: u64, first_word: u64) {
    let mut state = seed.wrapping_add(first_word.wrapping_mul(GOLDEN_GAMMA));
    let mut next = || {
        state = state.wrapping_add(GOLDEN_GAMMA);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&next().to_le_bytes());
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let last = next().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

/// Returns the lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Returns the lowercase hex SHA-256 of the file at `path`, read in chunks.
///
/// Blocking: from async code call it inside `tokio::task::spawn_blocking`.
pub fn sha256_file(path: impl AsRef<Path>) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; FILE_CHUNK];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(hex::encode(hasher.finalize())),
            Ok(n) => hasher.update(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `len` bytes of [`random_bytes`]`(len, seed)` to `path` in chunks,
/// without holding the whole file in memory, and returns its SHA-256 as hex.
///
/// Blocking: from async code call it inside `tokio::task::spawn_blocking`.
pub fn write_random_file(path: impl AsRef<Path>, len: u64, seed: u64) -> std::io::Result<String> {
    let mut out = BufWriter::with_capacity(FILE_CHUNK, File::create(path)?);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; FILE_CHUNK];
    let mut written = 0u64;
    while written < len {
        let n = (len - written).min(FILE_CHUNK as u64) as usize;
        let buf = &mut chunk[..n];
        fill_random(buf, seed, written / 8);
        hasher.update(&*buf);
        out.write_all(buf)?;
        written += n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_is_deterministic_and_prefix_stable() {
        let a = random_bytes(1001, 7);
        assert_eq!(a, random_bytes(1001, 7));
        assert_ne!(a, random_bytes(1001, 8));
        assert_eq!(a[..500], random_bytes(500, 7)[..]);
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn file_matches_in_memory_bytes_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = FILE_CHUNK as u64 * 2 + 13;
        let digest = write_random_file(&path, len, 42).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        let expected = random_bytes(len as usize, 42);
        assert_eq!(on_disk.len() as u64, len);
        assert!(on_disk == expected, "file content differs from random_bytes");
        assert_eq!(digest, sha256_hex(&expected));
        assert_eq!(sha256_file(&path).unwrap(), digest);
    }
}
