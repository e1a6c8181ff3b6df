//! Candidate parents for a peer (ARCHITECTURE.md section 4): filter, score,
//! keep the best few.
//!
//! Filter: other hosts only; not failed or leaving; not blocklisted by the
//! child; holding data or a source of data (a piece, an origin fetch in
//! progress, or a seed host). Two peers may be each other's parents (they
//! trade pieces both ways, as the fluid bound needs); a piece never flows
//! in a cycle because a peer only fetches pieces it lacks. Score: a weighted
//! sum of terms in [0, 1].

use std::collections::HashMap;

use crate::resource::{Host, Peer, PeerState, Task};

/// Weight of the parent's free upload slots ratio.
const W_FREE_UPLOAD: f64 = 0.20;
/// Weight of the fraction of the task the parent holds.
const W_PIECES: f64 = 0.30;
/// Weight of being a seed peer (a seed stays and fetches everything).
const W_SEED: f64 = 0.15;
/// Weight of sharing the child's IDC.
const W_IDC: f64 = 0.10;
/// Weight of the common prefix of the locations.
const W_LOCATION: f64 = 0.10;
/// Weight of the parent's past upload success rate.
const W_SUCCESS: f64 = 0.15;

/// A parent a child may fetch from.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The parent.
    pub peer: &'a Peer,
    /// Its host.
    pub host: &'a Host,
    /// Higher is better.
    pub score: f64,
}

/// The best `limit` parents for the peer of `child_host`, best first (ties
/// by host ID), leaving out parents that already serve `load_limit`
/// downloading children of the task ([`children_counts`]).
pub fn candidate_parents<'a>(
    task: &'a Task,
    hosts: &'a HashMap<String, Host>,
    child_host: &str,
    limit: usize,
    load_limit: usize,
) -> Vec<Candidate<'a>> {
    let Some(child) = task.peers.get(child_host) else {
        return Vec::new();
    };
    let children = children_counts(task);
    let loaded =
        |host: &str| !child.parents.iter().any(|p| p == host) && children.get(host).is_some_and(|&n| n >= load_limit);
    let child_info = hosts.get(child_host);
    let mut out: Vec<Candidate<'a>> = task
        .peers
        .values()
        .filter(|p| {
            p.host_id != child_host
                && p.is_active()
                && !p.is_blocked_by(&child.blocklist)
                && !task.distrusts(&p.host_id)
                && !loaded(&p.host_id)
        })
        .filter_map(|p| {
            let host = hosts.get(&p.host_id)?;
            let has_source = !p.pieces.is_empty()
                || matches!(p.state, PeerState::Succeeded | PeerState::BackToSource)
                || host.is_seed();
            if !has_source {
                return None;
            }
            Some(Candidate { peer: p, host, score: score(task, p, host, child_info) })
        })
        .collect();
    sort_best_first(&mut out);
    out.truncate(limit);
    out
}

/// How many downloading peers of the task have each host as a parent.
pub fn children_counts(task: &Task) -> HashMap<&str, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for peer in task.peers.values().filter(|p| matches!(p.state, PeerState::Pending | PeerState::Running)) {
        for parent in &peer.parents {
            *counts.entry(parent.as_str()).or_default() += 1;
        }
    }
    counts
}

/// Sorts by score, best first, ties by host ID so answers are stable.
pub fn sort_best_first(candidates: &mut [Candidate<'_>]) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.peer.host_id.cmp(&b.peer.host_id)));
}

/// The score of `parent` for a child on `child`.
pub fn score(task: &Task, parent: &Peer, host: &Host, child: Option<&Host>) -> f64 {
    let info = &host.info;
    let free_upload = if info.upload_slots == 0 {
        0.0
    } else {
        info.upload_slots.saturating_sub(info.uploads_active) as f64 / info.upload_slots as f64
    };
    let pieces = if parent.state == PeerState::Succeeded {
        1.0
    } else {
        // Unknown length: compare with the pieces known so far.
        let total = task.piece_count().unwrap_or(task.digests.len() as u32).max(1);
        (parent.pieces.len() as f64 / total as f64).min(1.0)
    };
    let seed = if host.is_seed() { 1.0 } else { 0.0 };
    let (idc, location) = match child {
        Some(c) => {
            let same_idc = !info.idc.is_empty() && info.idc == c.info.idc;
            (if same_idc { 1.0 } else { 0.0 }, location_affinity(&info.location, &c.info.location))
        }
        None => (0.0, 0.0),
    };
    let success = (host.uploads_ok as f64 + 1.0) / ((host.uploads_ok + host.uploads_failed) as f64 + 2.0);
    W_FREE_UPLOAD * free_upload
        + W_PIECES * pieces
        + W_SEED * seed
        + W_IDC * idc
        + W_LOCATION * location
        + W_SUCCESS * success
}

/// How much of two `country|province|city|...` locations agree, element by
/// element from the most general: matching leading elements over the longer
/// location's element count (0 when either is empty).
pub fn location_affinity(a: &str, b: &str) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (xs, ys): (Vec<&str>, Vec<&str>) = (a.split('|').collect(), b.split('|').collect());
    let common = xs.iter().zip(&ys).take_while(|(x, y)| x == y).count();
    common as f64 / xs.len().max(ys.len()) as f64
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use darter_common::task_id::TaskId;
    use darter_proto::common::v1 as pb;

    use super::*;
    use crate::resource::{HostInfo, PieceSet};

    struct Swarm {
        task: Task,
        hosts: HashMap<String, Host>,
    }

    impl Swarm {
        fn new(piece_count: u32) -> Self {
            let mut task = Task::new(TaskId::parse(&"b".repeat(64)).unwrap(), "http://o/f".into(), Instant::now());
            task.piece_length = Some(262_144);
            task.content_length = Some(piece_count as u64 * 262_144);
            Self { task, hosts: HashMap::new() }
        }

        fn host(&mut self, id: &str, seed: bool, idc: &str, location: &str, slots: (u32, u32)) {
            let kind = if seed { pb::HostType::Seed } else { pb::HostType::Normal };
            let proto = pb::Host {
                id: id.into(),
                ip: "10.0.0.1".into(),
                port: 4000,
                download_port: 4003,
                r#type: kind as i32,
                idc: idc.into(),
                location: location.into(),
                network: Some(pb::Network { upload_slots: slots.0, uploads_active: slots.1, ..Default::default() }),
                ..Default::default()
            };
            self.hosts.insert(id.into(), Host::new(HostInfo::try_from(proto).unwrap(), Instant::now()));
        }

        fn peer(&mut self, host: &str, state: PeerState, pieces: &[u32]) -> &mut Peer {
            if !self.hosts.contains_key(host) {
                self.host(host, false, "", "", (10, 0));
            }
            let mut p = Peer::new(format!("peer-{host}"), host.into(), 0, Instant::now());
            p.state = state;
            p.pieces = PieceSet::default();
            for &n in pieces {
                p.pieces.insert(n);
            }
            self.task.peers.insert(host.into(), p);
            self.task.peers.get_mut(host).unwrap()
        }

        fn pick(&self, child: &str, limit: usize) -> Vec<String> {
            candidate_parents(&self.task, &self.hosts, child, limit, usize::MAX)
                .into_iter()
                .map(|c| c.peer.host_id.clone())
                .collect()
        }
    }

    #[test]
    fn filters_self_dead_empty_and_blocklisted() {
        let mut s = Swarm::new(4);
        s.peer("child", PeerState::Running, &[]);
        s.peer("failed", PeerState::Failed, &[0, 1]);
        s.peer("leaving", PeerState::Leaving, &[0]);
        s.peer("empty", PeerState::Running, &[]);
        s.peer("origin", PeerState::BackToSource, &[]);
        s.peer("holder", PeerState::Running, &[2]);
        s.peer("done", PeerState::Succeeded, &[0, 1, 2, 3]);
        s.host("seed", true, "", "", (10, 0));
        s.peer("seed", PeerState::Pending, &[]);
        s.peer("blocked-by-host", PeerState::Succeeded, &[0]);
        s.peer("blocked-by-peer-id", PeerState::Succeeded, &[0]);
        let child = s.task.peers.get_mut("child").unwrap();
        child.block("blocked-by-host");
        child.block("peer-blocked-by-peer-id");
        let mut got = s.pick("child", 64);
        got.sort();
        assert_eq!(got, vec!["done", "holder", "origin", "seed"]);
    }

    #[test]
    fn scores_order_candidates() {
        let mut s = Swarm::new(4);
        s.host("child", false, "idc-a", "cn|zj|hz", (10, 0));
        s.peer("child", PeerState::Running, &[]);
        s.host("far", false, "idc-b", "us|ca|sf", (10, 0));
        s.peer("far", PeerState::Running, &[0, 1]);
        s.host("near", false, "idc-a", "cn|zj|hz", (10, 0));
        s.peer("near", PeerState::Running, &[0, 1]);
        s.host("busy", false, "idc-a", "cn|zj|hz", (10, 5));
        s.peer("busy", PeerState::Running, &[0, 1]);
        s.peer("full", PeerState::Succeeded, &[]);
        // near 0.625 > full 0.575 (all pieces, no affinity) > busy 0.525 > far 0.425
        assert_eq!(s.pick("child", 4), vec!["near", "full", "busy", "far"]);
        assert_eq!(s.pick("child", 2), vec!["near", "full"]);
        // A record of failed uploads pushes a parent down.
        s.hosts.get_mut("near").unwrap().uploads_failed = 50;
        assert_eq!(s.pick("child", 4), vec!["full", "near", "busy", "far"]);
    }

    #[test]
    fn a_parent_at_its_load_limit_is_nobody_elses_candidate() {
        let mut s = Swarm::new(4);
        s.peer("busy", PeerState::Succeeded, &[0, 1, 2, 3]);
        s.peer("idle", PeerState::Succeeded, &[0, 1, 2, 3]);
        s.peer("a", PeerState::Running, &[]).parents = vec!["busy".into()];
        s.peer("b", PeerState::Running, &[]).parents = vec!["busy".into()];
        s.peer("done", PeerState::Succeeded, &[0, 1, 2, 3]).parents = vec!["busy".into()];
        s.peer("child", PeerState::Running, &[]);
        let pick = |s: &Swarm, child: &str, load_limit: usize| -> Vec<String> {
            let mut got: Vec<String> = candidate_parents(&s.task, &s.hosts, child, 8, load_limit)
                .into_iter()
                .map(|c| c.peer.host_id.clone())
                .collect();
            got.sort();
            got
        };
        assert_eq!(children_counts(&s.task).get("busy"), Some(&2), "a finished child no longer counts");
        assert!(pick(&s, "child", 3).contains(&"busy".to_string()));
        assert!(!pick(&s, "child", 2).contains(&"busy".to_string()), "two children: at the limit");
        assert!(pick(&s, "a", 2).contains(&"busy".to_string()), "a child keeps the parent it has");
    }

    #[test]
    fn seeds_rank_above_equal_normal_peers() {
        let mut s = Swarm::new(4);
        s.peer("child", PeerState::Running, &[]);
        s.host("seed", true, "", "", (10, 0));
        s.peer("seed", PeerState::BackToSource, &[0]);
        s.peer("normal", PeerState::Running, &[0]);
        assert_eq!(s.pick("child", 4), vec!["seed", "normal"]);
    }

    #[test]
    fn peers_may_be_each_others_parents() {
        let mut s = Swarm::new(4);
        s.peer("a", PeerState::Running, &[0]).parents = vec!["b".into()];
        s.peer("b", PeerState::Running, &[1]).parents = vec!["a".into()];
        assert_eq!(s.pick("a", 4), vec!["b"]);
        assert_eq!(s.pick("b", 4), vec!["a"]);
    }

    #[test]
    fn location_affinity_is_a_prefix_match() {
        assert_eq!(location_affinity("cn|zj|hz", "cn|zj|hz"), 1.0);
        assert!((location_affinity("cn|zj|hz", "cn|zj|nb") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(location_affinity("cn|zj", "us|zj"), 0.0);
        assert_eq!(location_affinity("", "cn"), 0.0);
        assert!((location_affinity("cn", "cn|zj") - 0.5).abs() < 1e-9);
    }
}
