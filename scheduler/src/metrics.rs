//! The scheduler's Prometheus metrics (served on `/metrics` of the metrics
//! address, every name prefixed `scheduler_`).

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Where a reported piece came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceSource {
    /// Fetched from the origin by an origin fetcher.
    Origin,
    /// Fetched from another peer.
    Peer,
}

impl PieceSource {
    fn label(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Peer => "peer",
        }
    }
}

/// Every metric the scheduler exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry to serve.
    pub registry: Registry,
    registrations: IntCounter,
    decisions: IntCounterVec,
    scheduling_seconds: Histogram,
    back_to_source: IntCounter,
    pieces: IntCounterVec,
    piece_bytes: IntCounterVec,
    rejections: IntCounterVec,
    piece_failures: IntCounterVec,
    seed_triggers: IntCounterVec,
    hosts: IntGauge,
    tasks: IntGauge,
    peers: IntGauge,
    seed_peers: IntGauge,
    seed_peers_announced: IntGauge,
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("scheduler".into()), None).expect("valid prefix");
        let registrations = IntCounter::new("registrations_total", "Peers registered").expect("valid metric");
        let decisions = counter_vec(
            "decisions_total",
            "Scheduling answers by decision (normal, back_to_source, empty, seed_triggered)",
            "decision",
        );
        let scheduling_seconds = Histogram::with_opts(
            HistogramOpts::new("scheduling_duration_seconds", "Time to answer a register or reschedule")
                .buckets(prometheus::exponential_buckets(0.0001, 4.0, 10).expect("valid buckets")),
        )
        .expect("valid metric");
        let back_to_source = IntCounter::new("back_to_source_total", "Peers that started fetching from the origin")
            .expect("valid metric");
        let pieces = counter_vec("pieces_reported_total", "Pieces reported by peers, by source", "source");
        let piece_bytes = counter_vec("piece_bytes_total", "Bytes of reported pieces, by source", "source");
        let rejections = counter_vec("rejections_total", "Requests refused, by reason", "reason");
        let piece_failures = counter_vec(
            "piece_failures_total",
            "Piece fetches that failed at a peer (digest_mismatch blocklists the parent), by reason",
            "reason",
        );
        let seed_triggers =
            counter_vec("seed_triggers_total", "TriggerDownloadTask calls to seed peers, by result", "result");
        let hosts = IntGauge::new("hosts", "Hosts known").expect("valid metric");
        let tasks = IntGauge::new("tasks", "Tasks known").expect("valid metric");
        let peers = IntGauge::new("peers", "Peers known").expect("valid metric");
        let seed_peers = IntGauge::new(
            "seed_peers",
            "Trusted seed peer addresses (configured, listed by the manager, or announced with a seed certificate)",
        )
        .expect("valid metric");
        let seed_peers_announced = IntGauge::new(
            "seed_peers_announced",
            "Trusted seed peers that announced themselves: the ones a task can be sent to now",
        )
        .expect("valid metric");
        let collectors: [Box<dyn Collector>; 14] = [
            Box::new(registrations.clone()),
            Box::new(decisions.clone()),
            Box::new(scheduling_seconds.clone()),
            Box::new(back_to_source.clone()),
            Box::new(pieces.clone()),
            Box::new(piece_bytes.clone()),
            Box::new(rejections.clone()),
            Box::new(piece_failures.clone()),
            Box::new(seed_triggers.clone()),
            Box::new(hosts.clone()),
            Box::new(tasks.clone()),
            Box::new(peers.clone()),
            Box::new(seed_peers.clone()),
            Box::new(seed_peers_announced.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("unique metric");
        }
        Self {
            registry,
            registrations,
            decisions,
            scheduling_seconds,
            back_to_source,
            pieces,
            piece_bytes,
            rejections,
            piece_failures,
            seed_triggers,
            hosts,
            tasks,
            peers,
            seed_peers,
            seed_peers_announced,
        }
    }

    /// A peer registered.
    pub fn registered(&self) {
        self.registrations.inc();
    }

    /// An answer was sent after `elapsed`.
    pub fn decided(&self, decision: &str, elapsed: Duration) {
        self.decisions.with_label_values(&[decision]).inc();
        self.scheduling_seconds.observe(elapsed.as_secs_f64());
    }

    /// A peer became an origin fetcher.
    pub fn went_back_to_source(&self) {
        self.back_to_source.inc();
    }

    /// A piece was reported.
    pub fn piece(&self, source: PieceSource, bytes: u64) {
        self.pieces.with_label_values(&[source.label()]).inc();
        self.piece_bytes.with_label_values(&[source.label()]).inc_by(bytes);
    }

    /// A request was refused.
    pub fn rejected(&self, reason: &str) {
        self.rejections.with_label_values(&[reason]).inc();
    }

    /// A peer failed to fetch a piece.
    pub fn piece_failed(&self, digest_mismatch: bool) {
        let reason = if digest_mismatch { "digest_mismatch" } else { "fetch" };
        self.piece_failures.with_label_values(&[reason]).inc();
    }

    /// A seed was triggered.
    pub fn seed_triggered(&self, ok: bool) {
        self.seed_triggers.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
    }

    /// How many seed peers are trusted now, and how many of them announced.
    pub fn set_seed_peers(&self, trusted: usize, announced: usize) {
        self.seed_peers.set(trusted as i64);
        self.seed_peers_announced.set(announced as i64);
    }

    /// Sizes of the model.
    pub fn set_counts(&self, (hosts, tasks, peers): (usize, usize, usize)) {
        self.hosts.set(hosts as i64);
        self.tasks.set(tasks as i64);
        self.peers.set(peers as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
