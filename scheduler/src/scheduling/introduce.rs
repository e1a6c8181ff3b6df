//! Introductions: a peer that has just verified its first piece becomes a
//! parent of other peers still downloading the task.
//!
//! In a flash crowd every peer registers before any of them holds a piece,
//! so the only parent anyone gets at registration is the seed; without
//! introductions every byte would come from the seed and the peers' upload
//! links would stay idle. When a peer reports its first piece, it is pushed
//! as a candidate parent to up to `limit` downloading peers, those with the
//! fewest parents first (ties in an order that differs per new parent, so
//! the mesh comes out balanced: every peer gets about `limit` parents and
//! about `limit` children). Edges go both ways between two peers that are
//! introduced to each other: pieces, not peers, are what must not cycle, and
//! a peer never fetches a piece it holds.
//!
//! A peer that completes is introduced once more, to the downloading peers
//! that hold the fewest pieces: its upload would otherwise serve only the
//! children it already has, which are often nearly done themselves, while
//! the peers furthest behind (fewest parents, or slow ones) set the makespan.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::resource::{Host, PeerState, Task};

/// Why a peer is introduced as a parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    /// It verified its first piece: to the peers with the fewest parents
    /// (fewer than `2 * limit`).
    FirstPiece,
    /// It completed the task: to the peers with the fewest pieces (fewer
    /// than `4 * limit` parents).
    Completed,
}

/// The downloading peers (host IDs) that `new_host` should become a parent
/// of: not itself, not seeds, not done or failed, not already its children,
/// not blocklisting it, reachable by a push, not too many parents already;
/// at most `limit` of them, in the order of the [`Occasion`].
pub fn introductions(
    task: &Task,
    hosts: &HashMap<String, Host>,
    new_host: &str,
    limit: usize,
    occasion: Occasion,
) -> Vec<String> {
    let max_parents = match occasion {
        Occasion::FirstPiece => 2 * limit,
        Occasion::Completed => 4 * limit,
    };
    let Some(new) = task.peers.get(new_host) else { return Vec::new() };
    let mut children: Vec<(usize, u64, &str)> = task
        .peers
        .values()
        .filter(|p| {
            p.host_id != new_host
                && matches!(p.state, PeerState::Pending | PeerState::Running)
                && p.tx.is_some()
                && !hosts.get(&p.host_id).is_some_and(Host::is_seed)
                && !p.parents.iter().any(|h| h == new_host)
                && !new.is_blocked_by(&p.blocklist)
                && p.parents.len() < max_parents
        })
        .map(|p| {
            let need = match occasion {
                Occasion::FirstPiece => p.parents.len(),
                Occasion::Completed => p.pieces.len() as usize,
            };
            (need, tie_break(new_host, &p.host_id), p.host_id.as_str())
        })
        .collect();
    children.sort_unstable();
    children.into_iter().take(limit).map(|(_, _, h)| h.to_string()).collect()
}

/// An order among equally connected children that differs per new parent.
fn tie_break(parent: &str, child: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (parent, child).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use darter_common::task_id::TaskId;
    use darter_proto::common::v1 as pb;
    use tokio::sync::mpsc;

    use super::*;
    use crate::resource::{HostInfo, Peer};

    struct Swarm {
        task: Task,
        hosts: HashMap<String, Host>,
        // Keeps the push channels open.
        _rx: Vec<mpsc::Receiver<Result<darter_proto::scheduler::v1::AnnouncePeerResponse, tonic::Status>>>,
    }

    impl Swarm {
        fn new() -> Self {
            let id = TaskId::parse(&"a".repeat(64)).unwrap();
            Self { task: Task::new(id, "http://o/f".into(), Instant::now()), hosts: HashMap::new(), _rx: Vec::new() }
        }

        fn peer(&mut self, host: &str, state: PeerState, seed: bool) -> &mut Peer {
            let proto = pb::Host {
                id: host.into(),
                ip: "10.0.0.1".into(),
                port: 4000,
                download_port: 4003,
                r#type: if seed { pb::HostType::Seed as i32 } else { pb::HostType::Normal as i32 },
                ..Default::default()
            };
            self.hosts.insert(host.into(), Host::new(HostInfo::try_from(proto).unwrap(), Instant::now()));
            let mut p = Peer::new(format!("{host}-peer"), host.into(), 1, Instant::now());
            p.state = state;
            let (tx, rx) = mpsc::channel(4);
            p.tx = Some(tx);
            self._rx.push(rx);
            self.task.peers.insert(host.into(), p);
            self.task.peers.get_mut(host).unwrap()
        }
    }

    #[test]
    fn a_new_holder_is_introduced_to_the_least_connected_downloaders() {
        let mut s = Swarm::new();
        s.peer("seed", PeerState::BackToSource, true);
        s.peer("new", PeerState::Running, false);
        s.peer("a", PeerState::Running, false).parents = vec!["seed".into(), "x".into(), "y".into()];
        s.peer("b", PeerState::Running, false).parents = vec!["seed".into()];
        s.peer("c", PeerState::Pending, false).parents = vec![];
        s.peer("done", PeerState::Succeeded, false);
        s.peer("gone", PeerState::Leaving, false);
        s.peer("has-it", PeerState::Running, false).parents = vec!["new".into()];
        s.peer("hates-it", PeerState::Running, false).block("new");
        s.peer("no-stream", PeerState::Running, false).tx = None;
        assert_eq!(introductions(&s.task, &s.hosts, "new", 2, Occasion::FirstPiece), vec!["c", "b"]);
        let mut all = introductions(&s.task, &s.hosts, "new", 10, Occasion::FirstPiece);
        all.sort();
        assert_eq!(all, vec!["a", "b", "c"]);
    }

    #[test]
    fn peers_with_plenty_of_parents_are_left_alone() {
        let mut s = Swarm::new();
        s.peer("new", PeerState::Running, false);
        s.peer("full", PeerState::Running, false).parents = (0..4).map(|i| format!("p{i}")).collect();
        assert!(introductions(&s.task, &s.hosts, "new", 2, Occasion::FirstPiece).is_empty());
        assert_eq!(introductions(&s.task, &s.hosts, "new", 3, Occasion::FirstPiece), vec!["full"]);
        assert!(introductions(&s.task, &s.hosts, "unknown", 3, Occasion::FirstPiece).is_empty());
    }

    #[test]
    fn a_completed_peer_is_introduced_to_those_furthest_behind() {
        let mut s = Swarm::new();
        s.peer("done", PeerState::Succeeded, false);
        for (name, pieces) in [("ahead", 9u32), ("behind", 1), ("middle", 5), ("far-behind", 0)] {
            let p = s.peer(name, PeerState::Running, false);
            for n in 0..pieces {
                p.pieces.insert(n);
            }
            p.parents = (0..6).map(|i| format!("p{i}")).collect();
        }
        s.peer("crowded", PeerState::Running, false).parents = (0..8).map(|i| format!("p{i}")).collect();
        assert_eq!(introductions(&s.task, &s.hosts, "done", 2, Occasion::Completed), vec!["far-behind", "behind"]);
        assert_eq!(
            introductions(&s.task, &s.hosts, "done", 2, Occasion::FirstPiece),
            Vec::<String>::new(),
            "a first holder leaves peers with 2 x limit parents alone"
        );
    }

    #[test]
    fn a_mesh_built_by_introductions_is_balanced() {
        let mut s = Swarm::new();
        let n = 16;
        for i in 0..n {
            s.peer(&format!("p{i:02}"), PeerState::Running, false);
        }
        for i in 0..n {
            let new = format!("p{i:02}");
            for child in introductions(&s.task, &s.hosts, &new, 4, Occasion::FirstPiece) {
                s.task.peers.get_mut(&child).unwrap().parents.push(new.clone());
            }
        }
        let parents: Vec<usize> = s.task.peers.values().map(|p| p.parents.len()).collect();
        assert!(parents.iter().all(|&k| (3..=5).contains(&k)), "{parents:?}");
    }
}
