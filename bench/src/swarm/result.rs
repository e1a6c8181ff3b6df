//! What one run measured, how it compares to the bound, and the Markdown
//! table of a whole benchmark.

use std::fmt::Write;

use serde::Serialize;

use super::bound::{BoundInputs, median, t_min};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;
/// Steal share from which a run's notes say so.
const NOISY_STEAL: f64 = 0.05;

/// One peer's part of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerResult {
    /// Peer index.
    pub peer: usize,
    /// Seconds from the common start until its copy was complete.
    pub seconds: Option<f64>,
    /// Killed on purpose (churn).
    pub killed: bool,
    /// Why it failed, if it did (a killed peer has no error).
    pub error: Option<String>,
    /// CPU seconds its client process tree used (daemon for Darter, the
    /// client itself for curl and aria2c) during the run.
    pub cpu_seconds: Option<f64>,
    /// The user part of `cpu_seconds`.
    pub user_seconds: Option<f64>,
    /// Highest RSS sampled during the run, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// RSS a few seconds after the run (idle), bytes.
    pub idle_rss_bytes: Option<u64>,
    /// Bytes that reached it over its link (headers included).
    pub wire_received_bytes: Option<u64>,
    /// Packets that reached it over its link (data and acknowledgements).
    pub wire_received_packets: Option<u64>,
    /// Darter: seconds from the start until its first piece was stored.
    pub first_byte_seconds: Option<f64>,
    /// Darter: bytes of pieces fetched after they were already stored
    /// (endgame duplicates; `dfdaemon_duplicate_piece_bytes_total`).
    pub duplicate_bytes: Option<u64>,
    /// Darter: (seconds, bytes downloaded) every 250 ms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<(f64, u64)>,
}

/// One system in one scenario at one peer count.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Profile name (`A`, `B`).
    pub profile: String,
    /// `darter`, `curl` or `bittorrent`.
    pub system: String,
    /// `cold`, `warm` or `churn`.
    pub scenario: String,
    /// Peers in the swarm (N); in the warm scenario one of them already
    /// holds the content and `bound.downloaders` is N - 1.
    pub peers: usize,
    /// Content size.
    pub size_bytes: u64,
    /// Piece length used (Darter's; BitTorrent is given the same).
    pub piece_length: u64,
    /// The bound's inputs (measured rates).
    pub bound: BoundInputs,
    /// The bound, seconds.
    pub t_min: f64,
    /// Slowest completed peer (of the peers expected to complete), seconds.
    pub makespan: Option<f64>,
    /// Median completion, seconds.
    pub p50: Option<f64>,
    /// Bytes the origin served for this run.
    pub origin_bytes: u64,
    /// How `origin_bytes` was counted.
    pub origin_counted: String,
    /// Bytes the origin node's link sent (headers included): for Darter the
    /// seed peer's uploads, for curl the origin's responses, for BitTorrent
    /// the seeder's uploads; `None` on loopback.
    pub origin_link_sent_bytes: Option<u64>,
    /// Share of the machine's cores busy during the run (steal included).
    pub machine_cpu_share: Option<f64>,
    /// Share of the machine's cores the hypervisor gave to other guests
    /// during the run (steal): timings are noisy when it is high.
    pub machine_steal_share: Option<f64>,
    /// CPU seconds per GiB that a bare socket pair needed on the same links
    /// (calibration, both ends counted): the least a peer that uploads what
    /// it downloads can spend here.
    pub socket_floor_cpu_s_per_gib: Option<f64>,
    /// Per peer.
    pub per_peer: Vec<PeerResult>,
    /// Anything a reader must know (fallbacks, skipped parts).
    pub notes: Vec<String>,
}

impl RunReport {
    /// A report with the bound computed and no peers yet.
    pub fn new(profile: &str, system: &str, scenario: &str, bound: BoundInputs, piece_length: u64) -> Self {
        Self {
            profile: profile.into(),
            system: system.into(),
            scenario: scenario.into(),
            peers: bound.downloaders,
            size_bytes: bound.size_bytes,
            piece_length,
            t_min: t_min(&bound),
            bound,
            makespan: None,
            p50: None,
            origin_bytes: 0,
            origin_counted: String::new(),
            origin_link_sent_bytes: None,
            machine_cpu_share: None,
            machine_steal_share: None,
            socket_floor_cpu_s_per_gib: None,
            per_peer: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Sets makespan and p50 from the peers that were not killed; a failed
    /// peer leaves the makespan unset (the run did not finish).
    pub fn settle(&mut self) {
        let expected: Vec<&PeerResult> = self.per_peer.iter().filter(|p| !p.killed).collect();
        let times: Vec<f64> = expected.iter().filter_map(|p| p.seconds).collect();
        self.p50 = median(&times);
        self.makespan =
            (times.len() == expected.len() && !times.is_empty()).then(|| times.iter().copied().fold(0.0, f64::max));
    }

    /// Peers that failed (not killed on purpose).
    pub fn failures(&self) -> usize {
        self.per_peer.iter().filter(|p| !p.killed && p.seconds.is_none()).count()
    }

    /// Makespan over the bound.
    pub fn makespan_ratio(&self) -> Option<f64> {
        self.makespan.map(|m| m / self.t_min)
    }

    /// p50 over the bound.
    pub fn p50_ratio(&self) -> Option<f64> {
        self.p50.map(|m| m / self.t_min)
    }

    /// Origin bytes over the content size.
    pub fn origin_copies(&self) -> f64 {
        self.origin_bytes as f64 / self.size_bytes.max(1) as f64
    }

    /// What the origin node's link sent, in copies of the content.
    pub fn origin_link_copies(&self) -> Option<f64> {
        self.origin_link_sent_bytes.map(|b| b as f64 / self.size_bytes.max(1) as f64)
    }

    /// Bytes received by the peers that completed over what they needed, minus one.
    pub fn wire_overhead(&self) -> Option<f64> {
        let done: Vec<&PeerResult> = self.per_peer.iter().filter(|p| p.seconds.is_some()).collect();
        let received: Option<u64> = done.iter().map(|p| p.wire_received_bytes).sum();
        let needed = done.len() as f64 * self.size_bytes as f64;
        received.filter(|_| needed > 0.0).map(|r| r as f64 / needed - 1.0)
    }

    /// Median CPU seconds per GiB downloaded, over the peers that completed.
    pub fn cpu_per_gib(&self) -> Option<f64> {
        self.median_per_gib(|p| p.cpu_seconds)
    }

    /// Median user CPU seconds per GiB downloaded, over the peers that completed.
    pub fn user_cpu_per_gib(&self) -> Option<f64> {
        self.median_per_gib(|p| p.user_seconds)
    }

    fn median_per_gib(&self, seconds: impl Fn(&PeerResult) -> Option<f64>) -> Option<f64> {
        let gib = self.size_bytes as f64 / GIB;
        let v: Vec<f64> =
            self.per_peer.iter().filter(|p| p.seconds.is_some()).filter_map(seconds).map(|c| c / gib).collect();
        median(&v)
    }

    /// Largest peak RSS over the peers.
    pub fn peak_rss_max(&self) -> Option<u64> {
        self.per_peer.iter().filter_map(|p| p.peak_rss_bytes).max()
    }

    /// Largest idle RSS over the peers.
    pub fn idle_rss_max(&self) -> Option<u64> {
        self.per_peer.iter().filter_map(|p| p.idle_rss_bytes).max()
    }

    /// The machine's cores were nearly all busy: the run may measure the
    /// machine, not the system.
    pub fn cpu_bound(&self) -> bool {
        self.machine_cpu_share.is_some_and(|s| s > 0.9)
    }
}

/// The Markdown table of `runs`, one row each.
pub fn markdown(runs: &[RunReport]) -> String {
    let mut s = String::new();
    s.push_str(
        "| profile | N | scenario | system | T_min s | makespan s | makespan/T_min | p50/T_min | origin copies | origin link copies | wire overhead | CPU s/GiB per peer (user) | peak RSS MiB | idle RSS MiB | failures | notes |\n",
    );
    s.push_str("|---|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in runs {
        let mut notes = r.notes.clone();
        if let Some(steal) = r.machine_steal_share.filter(|s| *s >= NOISY_STEAL) {
            notes.insert(0, format!("{:.0}% of the cores stolen by the hypervisor", steal * 100.0));
        }
        if r.cpu_bound() {
            notes.insert(0, format!("CPU-bound ({:.0}% of cores busy)", r.machine_cpu_share.unwrap_or(0.0) * 100.0));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            r.profile,
            r.peers,
            r.scenario,
            r.system,
            r.t_min,
            opt(r.makespan, 2),
            opt(r.makespan_ratio(), 2),
            opt(r.p50_ratio(), 2),
            r.origin_copies(),
            opt(r.origin_link_copies(), 2),
            r.wire_overhead().map_or("-".to_string(), |o| format!("{:.1}%", o * 100.0)),
            match (r.cpu_per_gib(), r.user_cpu_per_gib()) {
                (Some(all), Some(user)) => format!("{all:.2} ({user:.2})"),
                (all, _) => opt(all, 2),
            },
            opt(r.peak_rss_max().map(|b| b as f64 / MIB), 0),
            opt(r.idle_rss_max().map(|b| b as f64 / MIB), 0),
            r.failures(),
            notes.join("; "),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        let bound = BoundInputs {
            size_bytes: 1 << 30,
            source_up_bps: 100e6,
            peer_up_bps: 50e6,
            peer_down_bps: 100e6,
            downloaders: 3,
        };
        RunReport::new("A", "darter", "cold", bound, 1 << 20)
    }

    #[test]
    fn settles_makespan_and_ignores_killed_peers() {
        let mut r = report();
        r.per_peer = vec![
            PeerResult { peer: 0, seconds: Some(10.0), cpu_seconds: Some(0.5), ..Default::default() },
            PeerResult { peer: 1, seconds: Some(12.0), cpu_seconds: Some(0.7), ..Default::default() },
            PeerResult { peer: 2, killed: true, ..Default::default() },
        ];
        r.settle();
        assert_eq!(r.makespan, Some(12.0));
        assert_eq!(r.p50, Some(11.0));
        assert_eq!(r.failures(), 0);
        assert_eq!(r.cpu_per_gib(), Some(0.6));
        let table = markdown(&[r]);
        assert!(table.contains("| A | 3 | cold | darter |"), "{table}");
    }

    #[test]
    fn a_failed_peer_leaves_no_makespan() {
        let mut r = report();
        r.per_peer = vec![
            PeerResult { peer: 0, seconds: Some(10.0), ..Default::default() },
            PeerResult { peer: 1, error: Some("exit 1".into()), ..Default::default() },
        ];
        r.settle();
        assert_eq!(r.makespan, None);
        assert_eq!(r.failures(), 1);
    }

    #[test]
    fn wire_overhead_counts_completed_peers() {
        let mut r = report();
        r.per_peer = vec![PeerResult {
            peer: 0,
            seconds: Some(1.0),
            wire_received_bytes: Some((1 << 30) + (1 << 25)),
            ..Default::default()
        }];
        let o = r.wire_overhead().unwrap();
        assert!((o - 1.0 / 32.0).abs() < 1e-9, "{o}");
    }
}
