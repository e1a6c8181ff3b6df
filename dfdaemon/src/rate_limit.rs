//! A shared byte-rate limit: each transfer reserves the time its bytes take
//! at the configured rate and waits for its turn, so the host's total stays
//! at the rate however many transfers run at once.

use std::sync::Mutex;
use std::time::Duration;

use darter_common::sync::MutexExt as _;
use tokio::time::Instant;

/// Bytes per second for everything that shares it.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    next_free: Mutex<Instant>,
}

impl RateLimit {
    /// A limit of `bytes_per_second` (> 0).
    pub fn new(bytes_per_second: u64) -> Self {
        Self { bytes_per_second: bytes_per_second.max(1), next_free: Mutex::new(Instant::now()) }
    }

    /// Waits until `bytes` may go.
    pub async fn acquire(&self, bytes: u64) {
        let start = {
            let mut next = self.next_free.locked();
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn transfers_queue_behind_each_other_at_the_rate() {
        let limit = RateLimit::new(1000);
        let t0 = Instant::now();
        limit.acquire(500).await;
        assert_eq!(t0.elapsed(), Duration::ZERO, "the first goes at once");
        limit.acquire(500).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        limit.acquire(1).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(1000));
    }
}
