//! Piece-sized receive buffers, reused across pieces.
//!
//! A fresh piece buffer is fresh memory: the allocator maps it, the kernel
//! faults in and zeroes every page on the first write (measured: 4% of a
//! receiving daemon's CPU on a 1 GiB transfer), and on this kind of virtual
//! machine the host may fault it in once more. Buffers handed out by the pool
//! come back when the last reference to their bytes is dropped (after the
//! piece is hashed and written) and serve the next piece. The pool keeps at
//! most `max_bytes` of idle buffers and is emptied when the daemon goes idle.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use darter_common::sync::MutexExt as _;

/// Idle receive buffers.
#[derive(Debug)]
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
    max_bytes: usize,
}

/// A filled buffer lent out as [`Bytes`]; back to the pool on drop.
struct Lent {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

impl BufferPool {
    /// A pool keeping at most `max_bytes` of idle buffers.
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self { idle: Mutex::default(), max_bytes })
    }

    /// An empty buffer with room for `len` bytes: an idle one that fits
    /// (and is not more than twice as large), else a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self.take_any(len);
        buf.clear();
        buf
    }

    /// A buffer of `len` bytes, for a caller that overwrites what it uses:
    /// the bytes an earlier user left (only what an idle buffer lacks is
    /// zeroed, so a reused one costs no pass over its memory).
    pub fn take_initialized(&self, len: usize) -> Vec<u8> {
        let mut buf = self.take_any(len);
        buf.resize(len, 0);
        buf
    }

    fn take_any(&self, len: usize) -> Vec<u8> {
        let mut idle = self.idle.locked();
        match idle.iter().position(|b| b.capacity() >= len && b.capacity() / 2 <= len) {
            Some(i) => idle.swap_remove(i),
            None => Vec::with_capacity(len),
        }
    }

    /// The buffer's bytes, returned to the pool once no one holds them.
    pub fn lend(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent { buf, pool: self.clone() })
    }

    /// Bytes of idle buffers held now.
    pub fn idle_bytes(&self) -> usize {
        self.idle.locked().iter().map(Vec::capacity).sum()
    }

    /// Drops every idle buffer (the daemon has nothing to download).
    pub fn clear(&self) {
        self.idle.locked().clear();
    }

    /// Takes `buf` back for later pieces (if the pool has room).
    pub fn give_back(&self, buf: Vec<u8>) {
        let mut idle = self.idle.locked();
        let held: usize = idle.iter().map(Vec::capacity).sum();
        if held + buf.capacity() <= self.max_bytes {
            idle.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_bytes_are_dropped_and_are_reused() {
        let pool = BufferPool::new(4 << 20);
        let mut buf = pool.take(1 << 20);
        buf.extend_from_slice(&[7u8; 1 << 20]);
        let ptr = buf.as_ptr();
        let bytes = pool.lend(buf);
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "still held by a clone");
        assert_eq!(clone[..4], [7, 7, 7, 7]);
        drop(clone);
        assert_eq!(pool.idle_bytes(), 1 << 20);
        let again = pool.take(1 << 20);
        assert_eq!((again.as_ptr(), again.len()), (ptr, 0), "the same memory, empty");
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn an_initialized_buffer_comes_back_without_a_new_pass_over_it() {
        let pool = BufferPool::new(4 << 20);
        let mut buf = pool.take_initialized(1 << 20);
        assert_eq!(buf.len(), 1 << 20);
        buf[..4].copy_from_slice(&[9, 9, 9, 9]);
        let ptr = buf.as_ptr();
        pool.give_back(buf);
        let again = pool.take_initialized(1 << 20);
        assert_eq!((again.as_ptr(), again.len()), (ptr, 1 << 20), "the same memory, as it was left");
        assert_eq!(again[..4], [9, 9, 9, 9]);
        pool.give_back(again);
        assert_eq!(pool.take(1 << 20).len(), 0, "take() empties it");
    }

    #[test]
    fn sizes_must_fit_and_the_pool_is_bounded() {
        let pool = BufferPool::new(3 << 20);
        let lent: Vec<Bytes> = (0..5).map(|_| pool.lend(Vec::with_capacity(1 << 20))).collect();
        drop(lent);
        assert_eq!(pool.idle_bytes(), 3 << 20, "at most max_bytes are kept");
        assert!(pool.take(4 << 20).capacity() >= 4 << 20, "too small: a new buffer");
        assert_eq!(pool.idle_bytes(), 3 << 20);
        let _ = pool.take(100 << 10);
        assert_eq!(pool.idle_bytes(), 3 << 20, "more than twice too large: not used for a small piece");
        pool.clear();
        assert_eq!(pool.idle_bytes(), 0);
    }
}
