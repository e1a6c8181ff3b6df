//! Giving freed heap memory back to the system once the daemon is idle.
//!
//! A download of a large task allocates and frees many piece-sized buffers
//! across the runtime's threads; glibc keeps the freed memory in per-thread
//! arenas, so without a trim an idle daemon would keep the resident size of
//! its busiest moment (measured: 68 MiB after a 1 GiB swarm download).

/// Returns free heap memory to the system (glibc `malloc_trim`); a no-op on
/// other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is
    // thread-safe and takes no pointers from us.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Resident bytes of this process (`/proc/self/statm`).
    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        // SAFETY: sysconf only reads a system constant.
        #[allow(unsafe_code)]
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        pages * page
    }

    /// What the module is for: memory freed inside the heap (below a live
    /// allocation, so `free` cannot shrink the heap itself) stays resident
    /// until the trim gives it back.
    #[test]
    fn freed_heap_memory_stays_resident_until_trimmed() {
        const TOTAL: u64 = 64 << 20;
        // 16 KiB chunks: far below glibc's mmap threshold, so they come from
        // the heap, not from mmap (which `free` would unmap at once).
        let chunks: Vec<Vec<u8>> = (0..TOTAL / (16 << 10)).map(|i| vec![i as u8 | 1; 16 << 10]).collect();
        let pin = vec![1u8; 1024];
        drop(chunks);
        let freed = resident_bytes();
        super::release_free_memory();
        let trimmed = resident_bytes();
        assert!(
            freed.saturating_sub(trimmed) >= TOTAL / 2,
            "resident {freed} bytes after freeing {TOTAL}, {trimmed} after the trim: not given back"
        );
        assert_eq!(pin[0], 1);
    }
}
