//! Maps keyed by piece number, hashed cheaply.
//!
//! The download loop looks pieces up in these maps for every missing piece
//! on every scheduling pass; std's default SipHash made that a visible part
//! of a peer's CPU (profiled at 1 GiB with 16 parents). Piece numbers are
//! small integers below the task's piece count, so one multiplication
//! spreads them well enough, and there is no attacker-chosen key to defend
//! against beyond that bound.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from piece number to `V`.
pub type PieceMap<V> = HashMap<u32, V, BuildHasherDefault<PieceHasher>>;

/// Fibonacci hashing of a `u32` key.
#[derive(Debug, Default, Clone, Copy)]
pub struct PieceHasher(u64);

impl Hasher for PieceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u32` keys are hashed here; anything else still works, slowly.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let mut m: PieceMap<u32> = PieceMap::default();
        for n in 0..10_000 {
            m.insert(n, n * 2);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000).all(|n| m[&n] == n * 2));
        assert!(!m.contains_key(&10_000));
    }

    #[test]
    fn neighbouring_numbers_spread_over_buckets() {
        let top = |n: u32| {
            let mut h = PieceHasher::default();
            h.write_u32(n);
            h.finish() >> 57
        };
        let buckets: std::collections::HashSet<u64> = (0..128).map(top).collect();
        assert!(buckets.len() > 64, "{} of 128 top-7-bit buckets used", buckets.len());
    }
}
