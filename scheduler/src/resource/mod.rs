//! The scheduler's in-memory model: hosts, tasks, and their peers (one per
//! host per task), behind one `std::sync::Mutex`. Every operation is
//! synchronous and short; callers never hold the lock across an `.await`.
//!
//! Nothing is persisted: after a restart peers re-announce and re-register.

pub mod host;
pub mod peer;
pub mod pieces;
pub mod task;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use darter_common::digest::Digest;
use darter_common::limits::RequestLimits;
use darter_common::sync::MutexExt as _;
use darter_common::task_id::TaskId;
use darter_proto::common::v1 as pb;
use darter_proto::scheduler::v1 as spb;

pub use self::host::{Host, HostInfo, HostType};
pub use self::peer::{Peer, PeerState, ResponseTx};
pub use self::pieces::PieceSet;
pub use self::task::{OriginOutcome, OriginPiece, Task};
use crate::error::Error;

/// The shared model.
#[derive(Debug, Default)]
pub struct Resources {
    state: Mutex<State>,
}

impl Resources {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty model holding each host to `max_tasks_per_host` (`limits.max_tasks_per_host`).
    pub fn with_max_tasks_per_host(max_tasks_per_host: usize) -> Self {
        let this = Self::default();
        this.lock().max_tasks_per_host = max_tasks_per_host;
        this
    }

    /// Locks the model. A panic while locked cannot leave it half-changed in a
    /// way later requests rely on (every operation validates before it writes),
    /// so a poisoned lock is taken over rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }
}

/// Identifies one registration of a peer: the (task, host) key plus the
/// generation, so a replaced registration's stream cannot touch its successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKey {
    /// Task.
    pub task_id: TaskId,
    /// Host.
    pub host_id: String,
    /// Registration.
    pub generation: u64,
}

/// A validated `register` message.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Task, checked against the download.
    pub task_id: TaskId,
    /// Host of the peer.
    pub host_id: String,
    /// Peer ID.
    pub peer_id: String,
    /// What is downloaded (used to trigger seeds).
    pub download: pb::Download,
    /// Pieces the peer says it already holds.
    pub present_pieces: Vec<u32>,
}

impl Registration {
    /// Validates the IDs of the first message and its `register` payload
    /// (a message from the network): the download's size first (`limits`:
    /// nothing over it is parsed or kept), then the task ID, which must be
    /// the ID the download yields.
    pub fn from_request(
        task_id: &str,
        host_id: &str,
        peer_id: &str,
        register: spb::RegisterPeerRequest,
        limits: &RequestLimits,
    ) -> Result<Self, Error> {
        if let Some(d) = &register.download {
            limits
                .check(&d.url, d.request_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| Error::InvalidArgument(format!("register.download: {e} (limits.{})", e.field())))?;
        }
        if host_id.is_empty() || host_id.len() > host::MAX_ID_LEN {
            return Err(Error::InvalidArgument(format!(
                "host_id must be 1 to {} bytes, got {}",
                host::MAX_ID_LEN,
                host_id.len()
            )));
        }
        if peer_id.is_empty() || peer_id.len() > peer::MAX_PEER_ID_LEN {
            return Err(Error::InvalidArgument(format!(
                "peer_id must be 1 to {} bytes, got {}",
                peer::MAX_PEER_ID_LEN,
                peer_id.len()
            )));
        }
        let id = TaskId::parse(task_id).map_err(|e| Error::InvalidArgument(format!("task_id: {e}")))?;
        let download =
            register.download.ok_or_else(|| Error::InvalidArgument("register.download is required".into()))?;
        let digest = match &download.digest {
            Some(d) => Some(
                d.parse::<Digest>().map_err(|e| Error::InvalidArgument(format!("register.download.digest: {e}")))?,
            ),
            None => None,
        };
        let expected = TaskId::for_download(&download.url, digest.as_ref(), &download.tag, &download.application)
            .map_err(|e| Error::InvalidArgument(format!("register.download: {e}")))?;
        if expected != id {
            return Err(Error::TaskIdMismatch { given: id.to_string(), expected: expected.to_string() });
        }
        Ok(Self {
            task_id: id,
            host_id: host_id.to_string(),
            peer_id: peer_id.to_string(),
            download,
            present_pieces: register.present_pieces,
        })
    }
}

/// The URL as `StatTask` shows it: normalised and redacted
/// (`darter_common::secret`: no user info, no signature or token), so stats
/// never leak secrets.
fn display_url(raw: &str) -> String {
    let normalised = darter_common::task_id::normalise_url(raw).unwrap_or_default();
    darter_common::secret::redact_url_str(&normalised).into_string()
}

/// Default of [`State::max_tasks_per_host`] (`limits.max_tasks_per_host`).
pub const DEFAULT_MAX_TASKS_PER_HOST: usize = 4096;

/// Everything the scheduler knows.
#[derive(Debug)]
pub struct State {
    /// Hosts by ID.
    pub hosts: HashMap<String, Host>,
    /// Tasks by ID.
    pub tasks: HashMap<TaskId, Task>,
    /// Tasks each host created that are still held (see [`State::register`]).
    created: HashMap<String, usize>,
    /// Tasks a host may have created and still held.
    pub max_tasks_per_host: usize,
}

impl Default for State {
    fn default() -> Self {
        Self {
            hosts: HashMap::new(),
            tasks: HashMap::new(),
            created: HashMap::new(),
            max_tasks_per_host: DEFAULT_MAX_TASKS_PER_HOST,
        }
    }
}

impl State {
    /// Adds or refreshes a host.
    pub fn announce_host(&mut self, info: HostInfo, now: Instant) {
        let id = info.id.clone();
        match self.hosts.get_mut(&info.id) {
            Some(h) => {
                h.info = info;
                h.last_announce = now;
            }
            None => {
                self.hosts.insert(info.id.clone(), Host::new(info, now));
            }
        }
        // A live host keeps its finished peers: they are still parents. (Peers
        // still downloading must keep talking on their own stream.)
        for task in self.tasks.values_mut() {
            if let Some(peer) = task.peers.get_mut(&id).filter(|p| p.state == PeerState::Succeeded) {
                peer.last_seen = now;
                task.updated_at = now;
            }
        }
    }

    /// Whether `caller` may act for host `id`: a host is bound to the member
    /// whose certificate first announced it, until it leaves or is collected.
    /// An unknown host, or one announced in plaintext mode, binds nobody.
    pub fn check_owner(&self, id: &str, caller: Option<&darter_common::tls::Identity>) -> Result<(), Error> {
        match self.hosts.get(id).and_then(|h| h.owner.as_ref()) {
            Some(owner) if Some(owner) != caller => Err(Error::PermissionDenied(format!(
                "host {id} belongs to {owner}; {} may not act for it",
                caller.map_or_else(|| "an unauthenticated caller".to_owned(), ToString::to_string)
            ))),
            _ => Ok(()),
        }
    }

    /// Binds host `id` to `owner` (see [`State::check_owner`]).
    pub fn set_owner(&mut self, id: &str, owner: Option<&darter_common::tls::Identity>) {
        if let Some(h) = self.hosts.get_mut(id) {
            h.owner = owner.cloned();
        }
    }

    /// Removes a host and its peers; returns whether it was known.
    pub fn leave_host(&mut self, host_id: &str, now: Instant) -> bool {
        for task in self.tasks.values_mut() {
            if let Some(mut peer) = task.peers.remove(host_id) {
                peer.evict();
                task.updated_at = now;
            }
        }
        self.hosts.remove(host_id).is_some()
    }

    /// Registers a peer, replacing (and evicting) an earlier peer of the same
    /// (task, host). The host must have announced itself. A registration
    /// that creates a task counts against its host's
    /// [`State::max_tasks_per_host`] (seed peers are exempt): at the limit the
    /// host's least recently active task with nothing downloading is dropped,
    /// and when there is none the registration is refused.
    pub fn register(&mut self, reg: &Registration, now: Instant) -> Result<(PeerKey, &mut Task), Error> {
        let Some(host) = self.hosts.get(&reg.host_id) else {
            return Err(Error::UnknownHost(reg.host_id.clone()));
        };
        if !self.tasks.contains_key(&reg.task_id) {
            let seed = host.is_seed();
            if !seed {
                self.make_room_for_a_task_of(&reg.host_id)?;
            }
            let mut task = Task::new(reg.task_id.clone(), display_url(&reg.download.url), now);
            task.created_by = (!seed).then(|| reg.host_id.clone());
            if let Some(creator) = &task.created_by {
                *self.created.entry(creator.clone()).or_default() += 1;
            }
            self.tasks.insert(reg.task_id.clone(), task);
        }
        let task = self.tasks.get_mut(&reg.task_id).expect("present or just inserted");
        let distrusted = task.distrusts(&reg.host_id);
        // A host blocklisted for the task downloads like anyone, but what it
        // says it holds or fetches from the origin counts for nothing.
        let pieces = if distrusted { PieceSet::default() } else { task.present_pieces(&reg.present_pieces)? };
        let generation = peer::next_generation();
        let mut peer = Peer::new(reg.peer_id.clone(), reg.host_id.clone(), generation, now);
        peer.pieces = pieces;
        peer.may_back_to_source = !reg.download.disable_back_to_source && !distrusted;
        if let Some(mut old) = task.peers.remove(&reg.host_id) {
            old.evict();
            peer.inherit_ids(&old);
        }
        task.peers.insert(reg.host_id.clone(), peer);
        task.updated_at = now;
        let key = PeerKey { task_id: reg.task_id.clone(), host_id: reg.host_id.clone(), generation };
        Ok((key, task))
    }

    /// The task of a live registration, refreshing its last-seen time.
    /// Fails when the peer was removed or replaced since.
    pub fn session(&mut self, key: &PeerKey, now: Instant) -> Result<&mut Task, Error> {
        live_task(&mut self.tasks, key, now)
    }

    /// Why a registration is gone, for its stream's final status.
    pub fn eviction_reason(&self, key: &PeerKey) -> Error {
        evicted_in(self.tasks.get(&key.task_id), key)
    }

    /// Below its task limit, `host` may create a task: drops its least
    /// recently active task with nothing downloading when it is at the
    /// limit; refuses when every one of them is downloading.
    fn make_room_for_a_task_of(&mut self, host: &str) -> Result<(), Error> {
        let max = self.max_tasks_per_host;
        if self.tasks_created_by(host) < max {
            return Ok(());
        }
        let idle = self
            .tasks
            .values()
            .filter(|t| t.created_by.as_deref() == Some(host) && t.peers.values().all(|p| p.state.is_terminal()))
            .min_by_key(|t| t.updated_at)
            .map(|t| t.id.clone());
        let Some(id) = idle else {
            return Err(Error::LimitExceeded(format!(
                "host {host} already has {max} tasks downloading; no more until one ends (limits.max_tasks_per_host)"
            )));
        };
        tracing::info!(task_id = %id, host_id = %host, limit = max, "host at its task limit: dropping its least recently active task");
        self.retain_tasks(|t| t.id != id);
        Ok(())
    }

    /// Keeps the tasks `keep` says to keep; the others go, their peers
    /// evicted. Returns how many went.
    pub fn retain_tasks(&mut self, mut keep: impl FnMut(&Task) -> bool) -> usize {
        let before = self.tasks.len();
        let created = &mut self.created;
        self.tasks.retain(|_, t| {
            if keep(t) {
                return true;
            }
            for p in t.peers.values_mut() {
                p.evict();
            }
            if let Some(creator) = &t.created_by
                && let Some(n) = created.get_mut(creator)
            {
                *n -= 1;
                if *n == 0 {
                    created.remove(creator);
                }
            }
            false
        });
        before - self.tasks.len()
    }

    /// Tasks `host` created that are still held.
    pub fn tasks_created_by(&self, host: &str) -> usize {
        self.created.get(host).copied().unwrap_or(0)
    }

    /// Removes the peer of `host_id` from a task if it is still generation `generation`.
    pub fn remove_peer(&mut self, task_id: &TaskId, host_id: &str, generation: u64, now: Instant) -> bool {
        let Some(task) = self.tasks.get_mut(task_id) else { return false };
        if task.peers.get(host_id).is_none_or(|p| p.generation != generation) {
            return false;
        }
        if let Some(mut p) = task.peers.remove(host_id) {
            p.evict();
        }
        task.updated_at = now;
        true
    }

    /// Decides again which hosts are seeds after the trusted seed addresses
    /// changed: a host is a seed while it announced itself as one and
    /// `trusted` holds its upload address, or it announced with a seed
    /// peer's certificate. Returns the hosts that changed, with whether they
    /// are seeds now.
    pub fn reclassify_seeds(&mut self, trusted: impl Fn(SocketAddr) -> bool) -> Vec<(String, bool)> {
        let mut changed = Vec::new();
        for host in self.hosts.values_mut() {
            let claims = host.info.proto.r#type == pb::HostType::Seed as i32;
            let seed = claims && (trusted(host.upload_addr()) || host.certified_seed());
            if seed != host.is_seed() {
                host.info.kind = if seed { HostType::Seed } else { HostType::Normal };
                changed.push((host.info.id.clone(), seed));
            }
        }
        changed
    }

    /// Numbers of hosts, tasks and peers.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.hosts.len(), self.tasks.len(), self.tasks.values().map(|t| t.peers.len()).sum())
    }

    /// A peer as `StatPeer` shows it.
    pub fn peer_info(&self, task: &Task, peer: &Peer) -> spb::PeerInfo {
        let parent_peer_ids =
            peer.parents.iter().map(|h| task.peers.get(h).map_or_else(|| h.clone(), |p| p.id.clone())).collect();
        spb::PeerInfo {
            id: peer.id.clone(),
            task_id: task.id.to_string(),
            host: self.hosts.get(&peer.host_id).map(|h| h.info.proto.clone()),
            state: peer.state.to_proto() as i32,
            pieces: peer.pieces.iter().collect(),
            parent_peer_ids,
            blocklisted_peer_ids: peer.blocklist.iter().cloned().collect(),
        }
    }
}

/// The task of a live registration in `tasks` (see [`State::session`]); a free
/// function so callers can hold `hosts` at the same time.
pub fn live_task<'a>(tasks: &'a mut HashMap<TaskId, Task>, key: &PeerKey, now: Instant) -> Result<&'a mut Task, Error> {
    let task = tasks.get_mut(&key.task_id).ok_or_else(|| evicted_in(None, key))?;
    if let Some(p) = task.peers.get_mut(&key.host_id)
        && p.generation == key.generation
    {
        p.last_seen = now;
        task.updated_at = now;
        return Ok(task);
    }
    Err(evicted_in(Some(task), key))
}

fn evicted_in(task: Option<&Task>, key: &PeerKey) -> Error {
    match task.and_then(|t| t.peers.get(&key.host_id)) {
        Some(p) if p.generation != key.generation => Error::Evicted(format!(
            "peer was replaced by a newer registration from host {} for task {}",
            key.host_id, key.task_id
        )),
        _ => Error::Evicted(format!(
            "peer of host {} for task {} was removed (it left, its host left, or it expired)",
            key.host_id, key.task_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn host(id: &str) -> HostInfo {
        HostInfo::try_from(pb::Host {
            id: id.into(),
            ip: "10.0.0.1".into(),
            port: 4000,
            download_port: 4003,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn seeds_follow_the_trusted_addresses() {
        let mut state = State::default();
        let now = Instant::now();
        let claims_seed = |id: &str| {
            let mut info = host(id);
            info.proto.r#type = pb::HostType::Seed as i32;
            info.kind = HostType::Normal; // as announce_host stores an untrusted claim
            info
        };
        state.announce_host(claims_seed("seed"), now);
        state.announce_host(host("normal"), now);
        let trusted: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(state.reclassify_seeds(|a| a == trusted), vec![("seed".to_string(), true)]);
        assert!(state.hosts["seed"].is_seed() && !state.hosts["normal"].is_seed(), "only a host claiming it");
        assert!(state.reclassify_seeds(|a| a == trusted).is_empty());
        assert_eq!(state.reclassify_seeds(|_| false), vec![("seed".to_string(), false)]);
        assert!(!state.hosts["seed"].is_seed());
    }

    #[test]
    fn a_seed_peers_certificate_makes_a_seed_before_any_list_does() {
        let mut state = State::default();
        let now = Instant::now();
        let mut info = host("certified");
        info.proto.r#type = pb::HostType::Seed as i32;
        info.kind = HostType::Seed; // as announce_host stores a seed peer certificate's claim
        info.port = 4100;
        state.announce_host(info, now);
        let seed = darter_common::tls::Identity::new(darter_common::tls::Role::SeedPeer, 1, "certified").unwrap();
        state.set_owner("certified", Some(&seed));
        state.announce_host(host("normal"), now);
        let listed: Vec<SocketAddr> = vec!["10.0.0.9:4000".parse().unwrap()];
        let certified: SocketAddr = "10.0.0.1:4100".parse().unwrap();
        assert_eq!(host::trigger_seeds(&state.hosts, &listed), [listed[0], certified], "listed first, then announced");
        assert_eq!(host::trigger_seeds(&state.hosts, &[certified]), [certified], "not twice");
        assert!(state.reclassify_seeds(|_| false).is_empty(), "a list without it does not demote it");
        state.leave_host("certified", now);
        assert_eq!(host::trigger_seeds(&state.hosts, &listed), listed, "a seed that left is not triggered");
    }

    fn registration(host: &str, peer: &str) -> Registration {
        let download = pb::Download { url: "http://origin/f".into(), ..Default::default() };
        let id = TaskId::for_download(&download.url, None, "", "").unwrap();
        Registration::from_request(
            id.as_str(),
            host,
            peer,
            spb::RegisterPeerRequest { download: Some(download), present_pieces: vec![] },
            &RequestLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn registration_checks_ids_against_the_download() {
        let download = pb::Download { url: "http://origin/f".into(), ..Default::default() };
        let reg = |task: &str, host: &str, peer: &str, d: Option<pb::Download>| {
            Registration::from_request(
                task,
                host,
                peer,
                spb::RegisterPeerRequest { download: d, present_pieces: vec![] },
                &RequestLimits::default(),
            )
        };
        let good = TaskId::for_download("http://origin/f", None, "", "").unwrap().to_string();
        assert!(reg(&good, "h", "p", Some(download.clone())).is_ok());
        let other = TaskId::for_download("http://origin/g", None, "", "").unwrap().to_string();
        assert!(matches!(reg(&other, "h", "p", Some(download.clone())), Err(Error::TaskIdMismatch { .. })));
        assert!(
            matches!(reg("../x", "h", "p", Some(download.clone())), Err(Error::InvalidArgument(m)) if m.starts_with("task_id"))
        );
        assert!(
            matches!(reg(&good, "", "p", Some(download.clone())), Err(Error::InvalidArgument(m)) if m.starts_with("host_id"))
        );
        assert!(
            matches!(reg(&good, "h", "", Some(download.clone())), Err(Error::InvalidArgument(m)) if m.starts_with("peer_id"))
        );
        assert!(matches!(reg(&good, "h", "p", None), Err(Error::InvalidArgument(m)) if m.contains("download")));
        let bad_digest = pb::Download { digest: Some("md5:x".into()), ..download };
        assert!(
            matches!(reg(&good, "h", "p", Some(bad_digest)), Err(Error::InvalidArgument(m)) if m.contains("digest"))
        );
    }

    #[test]
    fn one_peer_per_task_and_host() {
        let now = Instant::now();
        let mut s = State::default();
        assert!(matches!(s.register(&registration("h1", "p1"), now), Err(Error::UnknownHost(h)) if h == "h1"));
        s.announce_host(host("h1"), now);
        let (k1, _) = s.register(&registration("h1", "p1"), now).unwrap();
        let token = s.tasks[&k1.task_id].peers["h1"].evicted.clone();
        let (k2, task) = s.register(&registration("h1", "p2"), now).unwrap();
        assert_eq!(task.peers.len(), 1);
        assert!(task.peers["h1"].is_named("p1"), "former id kept");
        assert!(token.is_cancelled(), "old stream is told");
        assert!(matches!(s.session(&k1, now), Err(Error::Evicted(m)) if m.contains("replaced")));
        assert!(s.session(&k2, now).is_ok());
        assert!(!s.remove_peer(&k1.task_id, "h1", k1.generation, now), "stale generation removes nothing");
        assert!(s.leave_host("h1", now));
        assert!(matches!(s.session(&k2, now), Err(Error::Evicted(m)) if m.contains("removed")));
        assert_eq!(s.counts(), (0, 1, 0));
    }

    fn registration_for(url: &str, host: &str) -> Registration {
        let download = pb::Download { url: url.into(), ..Default::default() };
        let id = TaskId::for_download(url, None, "", "").unwrap();
        let request = spb::RegisterPeerRequest { download: Some(download), present_pieces: vec![] };
        Registration::from_request(id.as_str(), host, &format!("peer-{host}"), request, &RequestLimits::default())
            .unwrap()
    }

    #[test]
    fn tasks_count_against_their_creator_until_they_go() {
        let now = Instant::now();
        let mut s = State { max_tasks_per_host: 2, ..State::default() };
        s.announce_host(host("h"), now);
        let mut seed = host("seed");
        seed.kind = HostType::Seed;
        s.announce_host(seed, now);
        s.register(&registration_for("http://o/0", "h"), now).unwrap();
        s.register(&registration_for("http://o/1", "h"), now).unwrap();
        assert_eq!(s.tasks_created_by("h"), 2);
        // Joining an existing task creates nothing.
        s.register(&registration_for("http://o/0", "seed"), now).unwrap();
        let refused = s.register(&registration_for("http://o/2", "h"), now).map(|_| ()).unwrap_err();
        assert!(matches!(&refused, Error::LimitExceeded(m) if m.contains("limits.max_tasks_per_host")), "{refused}");
        assert_eq!(s.tasks.len(), 2, "a refused registration changes nothing");
        // Seeds are triggered by the scheduler itself: never counted.
        for n in 3..6 {
            s.register(&registration_for(&format!("http://o/{n}"), "seed"), now).unwrap();
        }
        assert_eq!(s.tasks_created_by("seed"), 0);
        // A finished download makes its task idle: it gives way to a new one.
        let first = TaskId::for_download("http://o/0", None, "", "").unwrap();
        s.tasks.get_mut(&first).unwrap().peers.get_mut("h").unwrap().state = PeerState::Succeeded;
        s.tasks.get_mut(&first).unwrap().peers.get_mut("seed").unwrap().state = PeerState::Succeeded;
        s.register(&registration_for("http://o/2", "h"), now).unwrap();
        assert!(!s.tasks.contains_key(&first) && s.tasks_created_by("h") == 2);
        // Tasks that expire give their places back.
        assert_eq!(s.retain_tasks(|t| t.created_by.is_none()), 2);
        assert_eq!(s.tasks_created_by("h"), 0);
    }

    #[test]
    fn task_urls_drop_credentials_and_signatures() {
        assert_eq!(
            display_url("https://user:secret@Origin.example/f?X-Amz-Signature=abc&v=1&token=t0ps3cret"),
            "https://origin.example/f?token=REDACTED&v=1"
        );
    }
}
