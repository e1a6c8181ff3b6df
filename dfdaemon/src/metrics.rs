//! dfdaemon's Prometheus metrics (served on `/metrics` of the metrics address).

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::download::Finished;
use crate::error::Error;

/// Every metric the daemon exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry to serve.
    pub registry: Registry,
    downloads: IntCounterVec,
    download_seconds: Histogram,
    bytes: IntCounterVec,
    /// Piece uploads served to other peers, by result.
    pub uploads: IntCounterVec,
    /// Bytes served to other peers.
    pub upload_bytes: IntCounter,
    /// Piece requests waiting for an upload slot now.
    pub upload_waiting: IntGauge,
    /// Bytes of Darter's tasks on disk.
    pub storage_bytes: IntGauge,
    /// Pieces from parents that did not match their reference digest.
    pub digest_mismatches: IntCounter,
    /// Bytes of pieces fetched from parents that this peer had already
    /// stored by the time they arrived (endgame duplicates).
    pub duplicate_piece_bytes: IntCounter,
    /// Proxy and mirror requests by mode and how they were served.
    proxy_requests: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("dfdaemon".into()), None).expect("valid prefix");
        let downloads =
            IntCounterVec::new(Opts::new("downloads_total", "Downloads by result"), &["result"]).expect("valid metric");
        let download_seconds = Histogram::with_opts(
            HistogramOpts::new("download_duration_seconds", "Time to complete a download")
                .buckets(prometheus::exponential_buckets(0.01, 4.0, 10).expect("valid buckets")),
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new("download_bytes_total", "Bytes downloaded by source (origin, peer, local)"),
            &["source"],
        )
        .expect("valid metric");
        let uploads = IntCounterVec::new(Opts::new("piece_uploads_total", "Piece uploads by result"), &["result"])
            .expect("valid metric");
        let upload_bytes =
            IntCounter::new("upload_bytes_total", "Bytes uploaded to other peers").expect("valid metric");
        let upload_waiting = IntGauge::new("upload_waiting_requests", "Piece requests waiting for an upload slot")
            .expect("valid metric");
        let storage_bytes =
            IntGauge::new("storage_bytes", "Bytes of verified content in storage").expect("valid metric");
        let digest_mismatches =
            IntCounter::new("piece_digest_mismatches_total", "Pieces from parents that failed verification")
                .expect("valid metric");
        let duplicate_piece_bytes = IntCounter::new(
            "duplicate_piece_bytes_total",
            "Bytes of pieces from parents that had already been stored (endgame duplicates)",
        )
        .expect("valid metric");
        let proxy_requests = IntCounterVec::new(
            Opts::new(
                "proxy_requests_total",
                "Proxy requests by mode (mirror, forward, connect) and route (p2p, upstream, fallback, refused, tunnel)",
            ),
            &["mode", "route"],
        )
        .expect("valid metric");
        for c in [
            Box::new(proxy_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(downloads.clone()),
            Box::new(download_seconds.clone()),
            Box::new(bytes.clone()),
            Box::new(uploads.clone()),
            Box::new(upload_bytes.clone()),
            Box::new(upload_waiting.clone()),
            Box::new(storage_bytes.clone()),
            Box::new(digest_mismatches.clone()),
            Box::new(duplicate_piece_bytes.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Self {
            registry,
            downloads,
            download_seconds,
            bytes,
            uploads,
            upload_bytes,
            upload_waiting,
            storage_bytes,
            digest_mismatches,
            duplicate_piece_bytes,
            proxy_requests,
        }
    }

    /// One proxy request.
    pub fn proxy_request(&self, mode: &str, route: &str) {
        self.proxy_requests.with_label_values(&[mode, route]).inc();
    }

    /// Counts a finished download.
    pub fn download_finished(&self, outcome: &Result<Finished, Error>, elapsed: Duration) {
        let result = match outcome {
            Ok(_) => "success",
            Err(e) => e.reason().as_str(),
        };
        self.downloads.with_label_values(&[result]).inc();
        if outcome.is_ok() {
            self.download_seconds.observe(elapsed.as_secs_f64());
        }
    }

    /// Bytes fetched from the origin.
    pub fn bytes_origin(&self, n: u64) {
        self.bytes.with_label_values(&["origin"]).inc_by(n);
    }

    /// Bytes fetched from other peers.
    pub fn bytes_peer(&self, n: u64) {
        self.bytes.with_label_values(&["peer"]).inc_by(n);
    }

    /// Bytes served from local storage.
    pub fn bytes_local(&self, n: u64) {
        self.bytes.with_label_values(&["local"]).inc_by(n);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
