//! What to tell a peer that registers or asks to be rescheduled, in order:
//!
//! 1. the task is known to be empty: nothing to fetch;
//! 2. the peer is on a seed host: fetch from the origin (seeds always may),
//!    unless another peer already completed the task;
//! 3. there are candidate parents: fetch from them;
//! 4. a seed peer is configured and announced: trigger it and hand it out
//!    as the parent (the caller does the RPC, then decides again without seeds);
//! 5. the task has fewer origin fetchers than `back_to_source_limit`: go to
//!    the origin (seed peers do not count);
//! 6. otherwise fetch from the origin fetchers, which will have the data,
//!    even ones this peer blocklisted (the origin limit is strict; the
//!    reschedule limit bounds the retries); with none at all, go to the origin.

use std::collections::HashMap;
use std::net::SocketAddr;

use darter_common::digest::Digest;
use darter_common::task_id::TaskId;
use darter_proto::scheduler::v1::{
    AnnouncePeerResponse, CandidateParent, EmptyTaskResponse, NeedBackToSourceResponse, NormalTaskResponse,
    announce_peer_response::Response,
};

use super::candidates::{Candidate, candidate_parents, score, sort_best_first};
use super::grants::Grants;
use crate::config::SchedulingConfig;
use crate::error::Error;
use crate::resource::host::seed_at;
use crate::resource::{Host, PeerState, Task};

/// An answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `EmptyTaskResponse`.
    Empty,
    /// `NormalTaskResponse` with these parents (host IDs), best first.
    Normal(Vec<String>),
    /// `NeedBackToSourceResponse` with this description.
    BackToSource(String),
}

impl Answer {
    /// Label of `scheduler_decisions_total{decision}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Normal(_) => "normal",
            Self::BackToSource(_) => "back_to_source",
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer now.
    Answer(Answer),
    /// Trigger the seed on this host first (rule 4).
    TriggerSeed {
        /// The seed's host ID.
        host_id: String,
        /// Its upload API.
        addr: SocketAddr,
    },
}

/// Rules 1-6 for the peer on `child_host`; `seeds` are the configured seed
/// upload addresses (empty to skip rule 4).
pub fn decide(
    task: &Task,
    hosts: &HashMap<String, Host>,
    child_host: &str,
    limits: &SchedulingConfig,
    seeds: &[SocketAddr],
) -> Decision {
    if let Some(a) = immediate(task, hosts, child_host, limits) {
        return Decision::Answer(a);
    }
    match pick_seed(task, hosts, child_host, seeds) {
        Some((host_id, addr)) => Decision::TriggerSeed { host_id, addr },
        None => Decision::Answer(fallback(task, hosts, child_host, limits)),
    }
}

/// Rules 1-3, 5 and 6 (no seed trigger).
pub fn decide_without_seeds(
    task: &Task,
    hosts: &HashMap<String, Host>,
    child_host: &str,
    limits: &SchedulingConfig,
) -> Answer {
    immediate(task, hosts, child_host, limits).unwrap_or_else(|| fallback(task, hosts, child_host, limits))
}

/// A peer that rescheduled more than `max_reschedules` times: the origin if
/// the limit allows, else refused.
pub fn decide_exhausted(
    task: &Task,
    hosts: &HashMap<String, Host>,
    child_host: &str,
    limits: &SchedulingConfig,
    reschedules: u32,
) -> Result<Answer, Error> {
    let may = task.peers.get(child_host).is_some_and(|p| p.may_back_to_source);
    if may && origin_fetchers(task, hosts, child_host) < limits.back_to_source_limit {
        Ok(Answer::BackToSource(format!("rescheduled {reschedules} times without a working parent")))
    } else {
        Err(Error::TooManyReschedules(reschedules))
    }
}

fn is_seed(hosts: &HashMap<String, Host>, host: &str) -> bool {
    hosts.get(host).is_some_and(Host::is_seed)
}

fn origin_fetchers(task: &Task, hosts: &HashMap<String, Host>, child_host: &str) -> usize {
    task.back_to_source_count(child_host, |h| is_seed(hosts, h))
}

fn immediate(
    task: &Task,
    hosts: &HashMap<String, Host>,
    child_host: &str,
    limits: &SchedulingConfig,
) -> Option<Answer> {
    if task.content_length == Some(0) {
        return Some(Answer::Empty);
    }
    let candidates = candidate_parents(task, hosts, child_host, limits.candidate_parent_limit, limits.load_limit);
    if is_seed(hosts, child_host) {
        if candidates.iter().any(|c| c.peer.state == PeerState::Succeeded) {
            return Some(normal(&candidates));
        }
        return Some(Answer::BackToSource("seed peers fetch tasks no peer has completed from the origin".into()));
    }
    (!candidates.is_empty()).then(|| normal(&candidates))
}

fn normal(candidates: &[Candidate<'_>]) -> Answer {
    Answer::Normal(candidates.iter().map(|c| c.peer.host_id.clone()).collect())
}

fn fallback(task: &Task, hosts: &HashMap<String, Host>, child_host: &str, limits: &SchedulingConfig) -> Answer {
    let child = task.peers.get(child_host);
    let may = child.is_none_or(|p| p.may_back_to_source);
    if may && origin_fetchers(task, hosts, child_host) < limits.back_to_source_limit {
        return Answer::BackToSource("no peer has this task yet".into());
    }
    let child_info = hosts.get(child_host);
    let mut fetchers: Vec<Candidate<'_>> = task
        .peers
        .values()
        .filter(|p| p.host_id != child_host && p.state == PeerState::BackToSource)
        .filter_map(|p| {
            let host = hosts.get(&p.host_id)?;
            Some(Candidate { peer: p, host, score: score(task, p, host, child_info) })
        })
        .collect();
    sort_best_first(&mut fetchers);
    fetchers.truncate(limits.candidate_parent_limit);
    if !fetchers.is_empty() {
        return normal(&fetchers);
    }
    if may {
        Answer::BackToSource("no parent is available".into())
    } else {
        Answer::BackToSource("no peer has this task yet and back-to-source is disabled for this download".into())
    }
}

/// Configured seeds in a stable order for a task: the ring of `seeds`
/// starting at sha256(task ID) mod n, so every scheduler replica picks the same seed.
pub fn seed_order(task_id: &TaskId, n: usize) -> impl Iterator<Item = usize> {
    let start = if n == 0 {
        0
    } else {
        let d = Digest::of(task_id.as_str().as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&d.as_bytes()[..8]);
        (u64::from_be_bytes(head) % n as u64) as usize
    };
    (0..n).map(move |i| (start + i) % n)
}

/// Rule 4: the first seed in [`seed_order`] that announced itself, is not
/// blocklisted by the child, and has no peer of the task yet (one that has is
/// either a candidate already or failed: not triggered twice).
fn pick_seed(
    task: &Task,
    hosts: &HashMap<String, Host>,
    child_host: &str,
    seeds: &[SocketAddr],
) -> Option<(String, SocketAddr)> {
    let child = task.peers.get(child_host)?;
    seed_order(&task.id, seeds.len()).find_map(|i| {
        let host = seed_at(hosts, seeds[i])?;
        let id = &host.info.id;
        let usable = !child.blocklist.contains(id) && !task.peers.contains_key(id) && id != child_host;
        usable.then(|| (id.clone(), seeds[i]))
    })
}

/// Applies an answer to the child: parents become its parent edges; going to
/// the origin makes it an origin fetcher (unless it may not).
pub fn apply(task: &mut Task, child_host: &str, answer: &Answer) {
    let Some(child) = task.peers.get_mut(child_host) else { return };
    match answer {
        Answer::Normal(parents) => {
            child.parents = parents.clone();
            if child.state == PeerState::BackToSource {
                child.state = PeerState::Running;
            }
        }
        Answer::BackToSource(_) if child.may_back_to_source => {
            child.state = PeerState::BackToSource;
            child.parents.clear();
        }
        Answer::BackToSource(_) | Answer::Empty => {}
    }
}

/// The response message for an answer.
pub fn response(
    task: &Task,
    hosts: &HashMap<String, Host>,
    answer: &Answer,
    limits: &SchedulingConfig,
    grants: &Grants<'_>,
) -> AnnouncePeerResponse {
    let response = match answer {
        Answer::Empty => Response::EmptyTask(EmptyTaskResponse {}),
        Answer::BackToSource(description) => {
            Response::NeedBackToSource(NeedBackToSourceResponse { description: description.clone() })
        }
        Answer::Normal(parents) => {
            let candidate_parents = parents
                .iter()
                .filter_map(|h| {
                    let (peer, host) = (task.peers.get(h)?, hosts.get(h)?);
                    Some(CandidateParent {
                        peer_id: peer.id.clone(),
                        host: Some(host.info.proto.clone()),
                        pieces: peer.pieces.iter().collect(),
                        is_seed: host.is_seed(),
                        grant: grants.issue(&task.id, h),
                    })
                })
                .collect();
            Response::NormalTask(NormalTaskResponse {
                candidate_parents,
                content_length: task.content_length,
                piece_length: task.piece_length.unwrap_or_default(),
                piece_digests: task.digests_proto(),
                concurrent_parent_limit: limits.concurrent_parent_limit,
            })
        }
    };
    AnnouncePeerResponse { response: Some(response) }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use darter_proto::common::v1 as pb;

    use super::*;
    use crate::resource::{HostInfo, Peer};

    struct Case {
        task: Task,
        hosts: HashMap<String, Host>,
        limits: SchedulingConfig,
    }

    fn seed_addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 1, i], 4000))
    }

    impl Case {
        fn new() -> Self {
            let task = Task::new(TaskId::parse(&"c".repeat(64)).unwrap(), "http://o/f".into(), Instant::now());
            Self { task, hosts: HashMap::new(), limits: SchedulingConfig::default() }
        }

        fn host(&mut self, id: &str, seed: Option<u8>) {
            let (ip, kind) = match seed {
                Some(i) => (format!("10.0.1.{i}"), pb::HostType::Seed),
                None => ("10.0.0.1".to_string(), pb::HostType::Normal),
            };
            let proto = pb::Host {
                id: id.into(),
                ip,
                port: 4000,
                download_port: 4003,
                r#type: kind as i32,
                ..Default::default()
            };
            self.hosts.insert(id.into(), Host::new(HostInfo::try_from(proto).unwrap(), Instant::now()));
        }

        fn peer(&mut self, host: &str, state: PeerState) -> &mut Peer {
            if !self.hosts.contains_key(host) {
                self.host(host, None);
            }
            let mut p = Peer::new(format!("peer-{host}"), host.into(), 0, Instant::now());
            p.state = state;
            self.task.peers.insert(host.into(), p);
            self.task.peers.get_mut(host).unwrap()
        }

        fn decide(&self, child: &str, seeds: &[SocketAddr]) -> Decision {
            decide(&self.task, &self.hosts, child, &self.limits, seeds)
        }
    }

    fn answer(a: Answer) -> Decision {
        Decision::Answer(a)
    }

    #[test]
    fn first_peer_goes_to_the_origin_then_others_follow_it() {
        let mut c = Case::new();
        c.peer("a", PeerState::Pending);
        let d = c.decide("a", &[]);
        assert!(matches!(d, Decision::Answer(Answer::BackToSource(_))), "{d:?}");
        let Decision::Answer(a) = d else { unreachable!() };
        apply(&mut c.task, "a", &a);
        assert_eq!(c.task.peers["a"].state, PeerState::BackToSource);
        c.peer("b", PeerState::Pending);
        assert_eq!(c.decide("b", &[]), answer(Answer::Normal(vec!["a".into()])));
    }

    #[test]
    fn origin_limit_is_strict_even_against_the_blocklist() {
        let mut c = Case::new();
        c.peer("a", PeerState::BackToSource);
        c.peer("b", PeerState::Pending).block("a");
        assert_eq!(c.decide("b", &[]), answer(Answer::Normal(vec!["a".into()])));
        c.limits.back_to_source_limit = 2;
        assert!(matches!(c.decide("b", &[]), Decision::Answer(Answer::BackToSource(_))));
    }

    #[test]
    fn empty_tasks_and_seed_hosts() {
        let mut c = Case::new();
        c.host("s", Some(1));
        c.peer("s", PeerState::Pending);
        c.peer("a", PeerState::BackToSource);
        assert!(matches!(c.decide("s", &[]), Decision::Answer(Answer::BackToSource(_))), "seed ignores the limit");
        c.peer("done", PeerState::Succeeded).pieces.insert(0);
        assert!(matches!(c.decide("s", &[]), Decision::Answer(Answer::Normal(p)) if p[0] == "done"));
        c.task.content_length = Some(0);
        assert_eq!(c.decide("a", &[]), answer(Answer::Empty));
    }

    #[test]
    fn seeds_are_triggered_once_per_task() {
        let mut c = Case::new();
        let seeds = [seed_addr(1), seed_addr(2)];
        c.peer("a", PeerState::Pending);
        assert!(matches!(c.decide("a", &seeds), Decision::Answer(Answer::BackToSource(_))), "seeds not announced");
        c.host("s1", Some(1));
        c.host("s2", Some(2));
        let first = seed_order(&c.task.id, 2).next().unwrap();
        let expected = ["s1", "s2"][first];
        assert_eq!(c.decide("a", &seeds), Decision::TriggerSeed { host_id: expected.into(), addr: seeds[first] });
        // The placeholder makes the seed a candidate: no second trigger.
        c.peer(expected, PeerState::BackToSource);
        assert_eq!(c.decide("a", &seeds), answer(Answer::Normal(vec![expected.into()])));
        // A failed seed is not triggered again; the next one in the ring is.
        c.task.peers.get_mut(expected).unwrap().state = PeerState::Failed;
        let other = if expected == "s1" { "s2" } else { "s1" };
        assert_eq!(c.decide("a", &seeds), Decision::TriggerSeed { host_id: other.into(), addr: seeds[1 - first] });
        c.task.peers.get_mut("a").unwrap().block(other);
        assert!(matches!(c.decide("a", &seeds), Decision::Answer(Answer::BackToSource(_))));
    }

    #[test]
    fn seed_order_is_stable_and_covers_every_seed() {
        let id = TaskId::parse(&"d".repeat(64)).unwrap();
        let a: Vec<usize> = seed_order(&id, 5).collect();
        assert_eq!(a, seed_order(&id, 5).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        assert_eq!(seed_order(&id, 0).count(), 0);
    }

    #[test]
    fn exhausted_peers_go_to_the_origin_only_within_the_limit() {
        let mut c = Case::new();
        c.peer("b", PeerState::Running);
        assert!(matches!(decide_exhausted(&c.task, &c.hosts, "b", &c.limits, 11), Ok(Answer::BackToSource(_))));
        c.peer("a", PeerState::BackToSource);
        assert_eq!(decide_exhausted(&c.task, &c.hosts, "b", &c.limits, 11), Err(Error::TooManyReschedules(11)));
    }

    #[test]
    fn peers_that_may_not_fetch_from_the_origin_are_not_counted() {
        let mut c = Case::new();
        c.peer("a", PeerState::Pending).may_back_to_source = false;
        let a = decide_without_seeds(&c.task, &c.hosts, "a", &c.limits);
        assert!(matches!(&a, Answer::BackToSource(m) if m.contains("disabled")));
        apply(&mut c.task, "a", &a);
        assert_eq!(c.task.peers["a"].state, PeerState::Pending);
    }

    #[test]
    fn normal_responses_carry_parents_and_digests() {
        let mut c = Case::new();
        c.task.piece_length = Some(262_144);
        c.task.content_length = Some(3 * 262_144);
        c.task.digests.insert(0, Digest::of(b"x"));
        c.peer("a", PeerState::BackToSource).pieces.insert(0);
        c.peer("b", PeerState::Pending);
        let r = response(&c.task, &c.hosts, &Answer::Normal(vec!["a".into()]), &c.limits, &Grants::none());
        let Some(Response::NormalTask(n)) = r.response else { panic!("{r:?}") };
        assert_eq!(n.candidate_parents[0].peer_id, "peer-a");
        assert_eq!(n.candidate_parents[0].pieces, vec![0]);
        assert_eq!(n.piece_digests[&0], Digest::of(b"x").to_string());
        assert_eq!((n.content_length, n.piece_length, n.concurrent_parent_limit), (Some(3 * 262_144), 262_144, 4));
    }
}
