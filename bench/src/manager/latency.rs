//! Latency samples of a closed-loop load phase and their summary
//! (requests per second, nearest-rank percentiles, errors).
//!
//! Every measured request keeps its latency in microseconds (4 bytes each:
//! 10 s at 20,000 requests/s is under 1 MiB), so percentiles are exact
//! rather than bucketed.

use std::time::Duration;

use serde::Serialize;

/// What one worker recorded inside the measured window.
#[derive(Debug, Default)]
pub struct Samples {
    /// Latency of every successful request, in microseconds.
    pub micros: Vec<u32>,
    /// Failed requests (error status, wrong answer, timeout).
    pub errors: u64,
    /// The first failure's message, to say what went wrong.
    pub first_error: Option<String>,
}

impl Samples {
    /// Records one successful request.
    pub fn ok(&mut self, took: Duration) {
        self.micros.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    /// Records one failed request.
    pub fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    /// Adds another worker's samples to these.
    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Successful requests in the measured window.
    pub requests: u64,
    /// Failed requests in the measured window.
    pub errors: u64,
    /// Length of the measured window in seconds.
    pub seconds: f64,
    /// `requests / seconds`.
    pub requests_per_s: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency in milliseconds.
    pub p999_ms: f64,
    /// Slowest request in milliseconds.
    pub max_ms: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl Summary {
    /// Summarises `samples` taken over `window`.
    pub fn new(mut samples: Samples, window: Duration) -> Self {
        samples.micros.sort_unstable();
        let sorted = &samples.micros;
        let ms = |q: f64| f64::from(percentile(sorted, q)) / 1000.0;
        let seconds = window.as_secs_f64();
        let requests = sorted.len() as u64;
        Self {
            requests,
            errors: samples.errors,
            seconds,
            requests_per_s: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: ms(1.0),
            first_error: samples.first_error,
        }
    }

    /// Failed requests as a fraction of all requests (0 when there were none).
    pub fn error_ratio(&self) -> f64 {
        let total = self.requests + self.errors;
        if total == 0 { 0.0 } else { self.errors as f64 / total as f64 }
    }
}

/// The nearest-rank `q` quantile (0 < q <= 1) of `sorted`; 0 when empty.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&values, 0.5), 500);
        assert_eq!(percentile(&values, 0.99), 990);
        assert_eq!(percentile(&values, 0.999), 999);
        assert_eq!(percentile(&values, 1.0), 1000);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn summary_of_merged_workers() {
        let mut a = Samples::default();
        for us in [3000, 1000] {
            a.ok(Duration::from_micros(us));
        }
        let mut b = Samples::default();
        b.ok(Duration::from_micros(2000));
        b.error("boom".into());
        b.error("later".into());
        a.merge(b);
        let s = Summary::new(a, Duration::from_secs(2));
        assert_eq!((s.requests, s.errors), (3, 2));
        assert_eq!(s.requests_per_s, 1.5);
        assert_eq!((s.p50_ms, s.max_ms), (2.0, 3.0));
        assert_eq!(s.first_error.as_deref(), Some("boom"));
        assert_eq!(s.error_ratio(), 0.4);
    }
}
