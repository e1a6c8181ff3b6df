//! Each Darter peer's progress during a run: bytes downloaded (from peers
//! and from the origin), read from its `/metrics` every few hundred
//! milliseconds. The timelines go into the run's JSON, so a slow peer can be
//! told apart as late to start, slow throughout, or slow at the end.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cluster::read_metrics;

/// The metrics whose sum is a peer's progress.
const DOWNLOADED: [&str; 2] =
    ["dfdaemon_download_bytes_total{source=\"peer\"}", "dfdaemon_download_bytes_total{source=\"origin\"}"];

/// One peer's samples: (seconds since the start, bytes downloaded).
pub type Timeline = Vec<(f64, u64)>;

/// Polls the peers' metrics until stopped.
pub struct ProgressSampler {
    timelines: Arc<Mutex<Vec<Timeline>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressSampler {
    /// Starts polling `peers` (their metrics addresses) every `interval`;
    /// the clock starts now.
    pub fn start(peers: Vec<SocketAddr>, interval: Duration) -> Self {
        let started = Instant::now();
        let timelines = Arc::new(Mutex::new(vec![Timeline::new(); peers.len()]));
        let shared = timelines.clone();
        let task = tokio::spawn(async move {
            loop {
                let reads = peers.iter().map(|&addr| read_metrics(addr, &DOWNLOADED));
                let values = futures::future::join_all(reads).await;
                let at = started.elapsed().as_secs_f64();
                {
                    let mut timelines = shared.lock().unwrap();
                    for (timeline, value) in timelines.iter_mut().zip(values) {
                        if let Some(v) = value {
                            let bytes = v.iter().map(|x| x.unwrap_or(0.0)).sum::<f64>() as u64;
                            timeline.push((at, bytes));
                        }
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
        Self { timelines, task }
    }

    /// Stops and returns every peer's timeline.
    pub fn stop(self) -> Vec<Timeline> {
        self.task.abort();
        self.timelines.lock().unwrap().clone()
    }
}

/// When a timeline first shows a downloaded byte.
pub fn first_byte_seconds(timeline: &Timeline) -> Option<f64> {
    timeline.iter().find(|&&(_, bytes)| bytes > 0).map(|&(at, _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_is_the_first_nonzero_sample() {
        assert_eq!(first_byte_seconds(&vec![(0.0, 0), (0.25, 0), (0.5, 4096), (0.75, 9000)]), Some(0.5));
        assert_eq!(first_byte_seconds(&vec![(0.0, 0)]), None);
    }

    #[tokio::test]
    async fn an_unreachable_peer_has_an_empty_timeline() {
        let dead = testkit_dead_addr();
        let sampler = ProgressSampler::start(vec![dead], Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sampler.stop(), vec![Timeline::new()]);
    }

    fn testkit_dead_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], crate::ports::free_port()))
    }
}
