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

    /// A `/metrics` page with both sources, answered to every connection;
    /// returns its address and how many pages it has served.
    async fn metrics_page() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = [0u8; 1024];
                let _ = s.read(&mut head).await;
                let body = "# TYPE x counter\ndfdaemon_download_bytes_total{source=\"origin\"} 28\n\
                            dfdaemon_download_bytes_total{source=\"peer\"} 100\n";
                let page = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = s.write_all(page.as_bytes()).await;
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        (addr, served)
    }

    #[tokio::test]
    async fn samples_add_both_sources_and_an_unreachable_peer_stays_empty() {
        let (live, served) = metrics_page().await;
        let dead = testkit::net::refused_addr();
        let sampler = ProgressSampler::start(vec![live, dead], Duration::from_millis(10));
        // Rounds run one after the other: a third page asked for means the
        // first two rounds are recorded.
        testkit::eventually("three rounds of sampling", || async {
            served.load(std::sync::atomic::Ordering::SeqCst) >= 3
        })
        .await;
        let timelines = sampler.stop();
        assert!(timelines[0].len() >= 2, "{timelines:?}");
        assert!(timelines[0].iter().all(|&(_, bytes)| bytes == 128), "{timelines:?}");
        assert!(timelines[0].windows(2).all(|w| w[0].0 < w[1].0), "times increase: {timelines:?}");
        assert_eq!(timelines[1], Timeline::new());
    }
}
