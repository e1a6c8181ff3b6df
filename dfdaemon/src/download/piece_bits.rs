//! A set of piece numbers as a bit vector: membership without hashing, for
//! the P2P scheduler's inner loop (every missing piece against every parent).

/// Piece numbers held by a parent.
#[derive(Debug, Default, Clone)]
pub struct PieceBits(Vec<u64>);

impl PieceBits {
    /// Adds `n`.
    pub fn insert(&mut self, n: u32) {
        let (word, bit) = (n as usize / 64, n % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    /// Whether `n` is in the set.
    pub fn contains(&self, n: u32) -> bool {
        self.0.get(n as usize / 64).is_some_and(|w| w & (1 << (n % 64)) != 0)
    }
}

impl Extend<u32> for PieceBits {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, numbers: I) {
        for n in numbers {
            self.insert(n);
        }
    }
}

impl FromIterator<u32> for PieceBits {
    fn from_iter<I: IntoIterator<Item = u32>>(numbers: I) -> Self {
        let mut bits = Self::default();
        bits.extend(numbers);
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_added_and_nothing_else() {
        let mut b: PieceBits = [0, 63, 64, 1000].into_iter().collect();
        for n in [0, 63, 64, 1000] {
            assert!(b.contains(n), "{n}");
        }
        for n in [1, 62, 65, 999, 1001, u32::MAX] {
            assert!(!b.contains(n), "{n}");
        }
        b.extend([5, 5]);
        assert!(b.contains(5));
    }
}
