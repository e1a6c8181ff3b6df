//! A set of piece numbers as a bitset: at most [`MAX_PIECE_COUNT`] bits
//! (128 KiB), whatever a peer claims.

use darter_common::piece::MAX_PIECE_COUNT;

/// Pieces a peer holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PieceSet {
    words: Vec<u64>,
    len: u32,
}

impl PieceSet {
    /// Every piece in `0..count`.
    pub fn full(count: u32) -> Self {
        let count = count.min(MAX_PIECE_COUNT);
        let mut words = vec![u64::MAX; (count / 64) as usize];
        if !count.is_multiple_of(64) {
            words.push((1u64 << (count % 64)) - 1);
        }
        Self { words, len: count }
    }

    /// Adds piece `n`; returns whether it was new. Numbers at or past
    /// [`MAX_PIECE_COUNT`] are refused (callers check ranges first).
    pub fn insert(&mut self, n: u32) -> bool {
        if n >= MAX_PIECE_COUNT {
            return false;
        }
        let (word, bit) = ((n / 64) as usize, n % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let new = self.words[word] & mask == 0;
        self.words[word] |= mask;
        if new {
            self.len += 1;
        }
        new
    }

    /// Whether piece `n` is in the set.
    pub fn contains(&self, n: u32) -> bool {
        self.words.get((n / 64) as usize).is_some_and(|w| w & (1u64 << (n % 64)) != 0)
    }

    /// Number of pieces in the set.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Piece numbers in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| (0..64u32).filter(move |b| w & (1u64 << b) != 0).map(move |b| i as u32 * 64 + b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_counts_and_iterates() {
        let mut s = PieceSet::default();
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(130));
        assert!(!s.insert(MAX_PIECE_COUNT));
        assert_eq!(s.len(), 2);
        assert!(s.contains(130) && !s.contains(129) && !s.contains(100_000));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 130]);
        assert_eq!(PieceSet::full(70).iter().count(), 70);
        assert!(PieceSet::full(0).is_empty());
    }
}
