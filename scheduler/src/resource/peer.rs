//! Peers: one download of one task on one host. A task has at most one peer
//! per host; a new registration from the same host replaces the old peer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use darter_proto::scheduler::v1::{self as spb, AnnouncePeerResponse};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::pieces::PieceSet;

/// Longest peer ID accepted.
pub const MAX_PEER_ID_LEN: usize = 255;
/// Most entries a peer's blocklist keeps (peer IDs and host IDs); further
/// entries are dropped, the peer can still reschedule.
pub const MAX_BLOCKLIST: usize = 1024;
/// Former peer IDs of a (task, host) kept so that children naming a replaced
/// peer (e.g. a seed's placeholder) still reach the same host.
pub const MAX_FORMER_IDS: usize = 4;

/// A fresh registration generation (process-wide, never reused).
pub fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Sender half of a peer's announce stream.
pub type ResponseTx = mpsc::Sender<Result<AnnouncePeerResponse, Status>>;

/// Where a peer is in its download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Registered, not started.
    Pending,
    /// Downloading from parents.
    Running,
    /// Fetching from the origin.
    BackToSource,
    /// Has the whole task.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Its stream ended before it completed.
    Leaving,
}

impl PeerState {
    /// The proto enum value.
    pub fn to_proto(self) -> spb::PeerState {
        match self {
            Self::Pending => spb::PeerState::Pending,
            Self::Running => spb::PeerState::Running,
            Self::BackToSource => spb::PeerState::BackToSource,
            Self::Succeeded => spb::PeerState::Succeeded,
            Self::Failed => spb::PeerState::Failed,
            Self::Leaving => spb::PeerState::Leaving,
        }
    }

    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::BackToSource => "back-to-source",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Leaving => "leaving",
        }
    }

    /// Whether the download is over (no more messages expected).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Leaving)
    }
}

/// A peer of a task.
#[derive(Debug)]
pub struct Peer {
    /// Peer ID (from the request; the key is the host).
    pub id: String,
    /// Host the peer runs on.
    pub host_id: String,
    /// Distinguishes this registration from earlier ones of the same (task, host).
    pub generation: u64,
    /// Download state.
    pub state: PeerState,
    /// Pieces held (verified by the peer, digest checked against the reference here).
    pub pieces: PieceSet,
    /// Host IDs of the parents handed to it (answers and introductions).
    pub parents: Vec<String>,
    /// Peer IDs and host IDs it must not be given as parents.
    pub blocklist: BTreeSet<String>,
    /// Reschedules asked for so far.
    pub reschedules: u32,
    /// Last message from it.
    pub last_seen: Instant,
    /// Whether it may fetch from the origin (`Download.disable_back_to_source` is false).
    pub may_back_to_source: bool,
    /// A placeholder for a seed the scheduler triggered, before the seed registers itself.
    pub placeholder: bool,
    /// Earlier peer IDs of this (task, host).
    pub former_ids: Vec<String>,
    /// Pushes to its announce stream; `None` before the first answer and after the stream ends.
    pub tx: Option<ResponseTx>,
    /// Cancelled when the peer is removed or replaced, so its stream ends.
    pub evicted: CancellationToken,
}

impl Peer {
    /// A fresh peer.
    pub fn new(id: String, host_id: String, generation: u64, now: Instant) -> Self {
        Self {
            id,
            host_id,
            generation,
            state: PeerState::Pending,
            pieces: PieceSet::default(),
            parents: Vec::new(),
            blocklist: BTreeSet::new(),
            reschedules: 0,
            last_seen: now,
            may_back_to_source: true,
            placeholder: false,
            former_ids: Vec::new(),
            tx: None,
            evicted: CancellationToken::new(),
        }
    }

    /// Whether `reference` (a peer ID, former peer ID or host ID) names this peer.
    pub fn is_named(&self, reference: &str) -> bool {
        self.id == reference || self.host_id == reference || self.former_ids.iter().any(|f| f == reference)
    }

    /// Whether the blocklist names this peer (by peer ID, former ID or host).
    pub fn is_blocked_by(&self, blocklist: &BTreeSet<String>) -> bool {
        blocklist.contains(&self.id)
            || blocklist.contains(&self.host_id)
            || self.former_ids.iter().any(|f| blocklist.contains(f))
    }

    /// Adds `entry` to the blocklist, within [`MAX_BLOCKLIST`].
    pub fn block(&mut self, entry: &str) {
        if self.blocklist.len() < MAX_BLOCKLIST && !entry.is_empty() {
            self.blocklist.insert(entry.to_string());
        }
    }

    /// Whether it can serve pieces to others: not failed or leaving, and
    /// holding data or a source of data (origin fetcher).
    pub fn is_active(&self) -> bool {
        !matches!(self.state, PeerState::Failed | PeerState::Leaving)
    }

    /// Ends its stream: stops pushes and wakes its stream task.
    pub fn evict(&mut self) {
        self.tx = None;
        self.evicted.cancel();
    }

    /// Takes over the former IDs of the peer it replaces.
    pub fn inherit_ids(&mut self, old: &Peer) {
        let mut ids: Vec<String> = old.former_ids.clone();
        if old.id != self.id {
            ids.push(old.id.clone());
        }
        ids.retain(|i| *i != self.id);
        let skip = ids.len().saturating_sub(MAX_FORMER_IDS);
        self.former_ids = ids.into_iter().skip(skip).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_blocklists_and_former_ids() {
        let now = Instant::now();
        let mut old = Peer::new("placeholder".into(), "seed-host".into(), 1, now);
        let mut new = Peer::new("real".into(), "seed-host".into(), 2, now);
        new.inherit_ids(&old);
        assert!(new.is_named("placeholder") && new.is_named("real") && new.is_named("seed-host"));
        assert!(!new.is_named("other"));
        let mut child = Peer::new("c".into(), "h".into(), 3, now);
        child.block("placeholder");
        assert!(new.is_blocked_by(&child.blocklist));
        for i in 0..2000 {
            child.block(&format!("p{i}"));
        }
        assert_eq!(child.blocklist.len(), MAX_BLOCKLIST);
        old.former_ids = (0..10).map(|i| format!("f{i}")).collect();
        new.inherit_ids(&old);
        assert_eq!(new.former_ids.len(), MAX_FORMER_IDS);
        assert_eq!(new.former_ids.last().unwrap(), "placeholder");
    }
}
