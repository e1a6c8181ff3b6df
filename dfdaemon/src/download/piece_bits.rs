//! A set of piece numbers as a bit vector: membership without hashing, for
//! the P2P scheduler's inner loop (every missing piece against every parent).
//!
//! Its numbers come from the network (a parent's `SyncPieces`, the
//! scheduler's candidates), so it never grows past
//! [`MAX_PIECE_COUNT`] bits (128 KiB) whatever it is told; callers check
//! numbers against the task first ([`first_out_of_range`]) and refuse the
//! sender with a clear error.

use darter_common::piece::MAX_PIECE_COUNT;

/// Piece numbers held by a parent.
#[derive(Debug, Default, Clone)]
pub struct PieceBits(Vec<u64>);

impl PieceBits {
    /// Adds `n`; a number at or past [`MAX_PIECE_COUNT`] is ignored (and
    /// `false` returned), so the set stays within 128 KiB.
    pub fn insert(&mut self, n: u32) -> bool {
        if n >= MAX_PIECE_COUNT {
            return false;
        }
        let (word, bit) = (n as usize / 64, n % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
        true
    }

    /// Whether `n` is in the set.
    pub fn contains(&self, n: u32) -> bool {
        self.0.get(n as usize / 64).is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    /// How many numbers the set holds.
    pub fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// Drops every number at or past `count` (once the task's piece count is known).
    pub fn truncate(&mut self, count: u32) {
        let words = (count as usize).div_ceil(64);
        self.0.truncate(words);
        if let Some(last) = self.0.last_mut()
            && !count.is_multiple_of(64)
        {
            *last &= (1u64 << (count % 64)) - 1;
        }
        self.0.shrink_to_fit();
    }

    /// Bytes the set holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * 8
    }
}

/// The first of `numbers` at or past `bound` (the task's piece count, or the
/// configured most while it is unknown), if any: a sender naming it is
/// refused before anything is stored.
pub fn first_out_of_range(numbers: impl IntoIterator<Item = u32>, bound: u32) -> Option<u32> {
    numbers.into_iter().find(|&n| n >= bound)
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
        assert_eq!(b.count(), 4);
        b.extend([5, 5]);
        assert!(b.contains(5));
        assert_eq!(b.count(), 5, "a number added twice counts once");
        b.truncate(64);
        assert!(b.contains(63) && !b.contains(64) && !b.contains(1000));
        b.truncate(6);
        assert!(b.contains(5) && !b.contains(63));
    }

    #[test]
    fn a_huge_number_allocates_nothing() {
        let mut b = PieceBits::default();
        assert!(!b.insert(u32::MAX), "4294967295 would be a 512 MiB vector");
        assert!(!b.insert(MAX_PIECE_COUNT));
        assert_eq!(b.heap_bytes(), 0);
        assert!(b.insert(MAX_PIECE_COUNT - 1));
        assert!(b.heap_bytes() <= (MAX_PIECE_COUNT as usize / 8) * 2, "bounded by the most pieces a task has");
        assert_eq!(first_out_of_range([1, 2, u32::MAX, 3], 40), Some(u32::MAX));
        assert_eq!(first_out_of_range([1, 39], 40), None);
    }
}
