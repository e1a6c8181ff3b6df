//! Tasks: the swarm of one download, its geometry and its reference piece
//! digests. Every report is checked in full before anything changes, so a
//! rejected message leaves the task as it was.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use darter_common::digest::Digest;
use darter_common::piece::{MAX_PIECE_COUNT, check_geometry, piece_count, piece_range};
use darter_common::task_id::TaskId;

use super::peer::{Peer, PeerState};
use super::pieces::PieceSet;
use crate::error::Error;

/// A piece a peer fetched from the origin, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPiece {
    /// Piece number.
    pub number: u32,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
    /// Digest of the origin's bytes.
    pub digest: Digest,
    /// Content length, when the origin told it.
    pub content_length: Option<u64>,
    /// Piece length of the task.
    pub piece_length: u64,
}

/// Parses a piece's digest, naming the piece on error.
pub fn parse_piece_digest(number: u32, digest: &str) -> Result<Digest, Error> {
    digest.parse().map_err(|e| Error::InvalidArgument(format!("piece {number}: {e}")))
}

impl OriginPiece {
    /// Validates a `download_piece_back_to_source_finished` message.
    pub fn from_request(
        req: darter_proto::scheduler::v1::DownloadPieceBackToSourceFinishedRequest,
    ) -> Result<Self, Error> {
        let piece = req.piece.ok_or_else(|| Error::InvalidArgument("piece is required".into()))?;
        Ok(Self {
            number: piece.number,
            offset: piece.offset,
            length: piece.length,
            digest: parse_piece_digest(piece.number, &piece.digest)?,
            content_length: req.content_length,
            piece_length: req.piece_length,
        })
    }
}

/// What recording an origin piece did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginOutcome {
    /// The digest is new: it is the reference now and children must learn it.
    NewReference,
    /// Another origin fetcher already reported the same digest.
    Known,
    /// Another origin fetcher reported a different digest first; the first is
    /// kept, and this peer is blocklisted for the task ([`Task::distrust`]).
    Conflict(Digest),
}

/// A piece a peer got from a parent, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPiece {
    /// Its length in bytes.
    pub length: u64,
    /// Whether the peer did not hold it yet (a repeated report credits no
    /// parent: children cannot inflate a parent's score).
    pub new: bool,
}

/// A task and its peers.
#[derive(Debug)]
pub struct Task {
    /// Task ID.
    pub id: TaskId,
    /// Source URL of the first registration.
    pub url: String,
    /// Content length, once an origin fetcher told it.
    pub content_length: Option<u64>,
    /// Piece length, once an origin fetcher reported a piece.
    pub piece_length: Option<u64>,
    /// Reference digests: the first digest an origin fetcher reported for each piece.
    pub digests: BTreeMap<u32, Digest>,
    /// Peers by host ID.
    pub peers: HashMap<String, Peer>,
    /// Last change or message; a task with no peers is collected `task_ttl` after it.
    pub updated_at: Instant,
    /// The host whose registration created the task (`None` for a seed
    /// peer's): it counts against that host's `limits.max_tasks_per_host`.
    pub created_by: Option<String>,
    /// Hosts whose origin digests conflicted with the reference: never a
    /// parent or origin fetcher of this task again (at most [`MAX_DISTRUSTED`]).
    pub distrusted: HashSet<String>,
}

/// Hosts a task remembers as distrusted.
pub const MAX_DISTRUSTED: usize = 1024;

impl Task {
    /// A task with no peers yet.
    pub fn new(id: TaskId, url: String, now: Instant) -> Self {
        Self {
            id,
            url,
            content_length: None,
            piece_length: None,
            digests: BTreeMap::new(),
            peers: HashMap::new(),
            updated_at: now,
            created_by: None,
            distrusted: HashSet::new(),
        }
    }

    /// Number of pieces, once the geometry is known (0 for empty content).
    pub fn piece_count(&self) -> Option<u32> {
        match (self.content_length, self.piece_length) {
            (Some(0), _) => Some(0),
            (Some(len), Some(pl)) => Some(piece_count(len, pl)),
            _ => None,
        }
    }

    /// The peer of `reference` (peer ID, former peer ID or host ID).
    pub fn resolve(&self, reference: &str) -> Option<&Peer> {
        if let Some(p) = self.peers.get(reference) {
            return Some(p);
        }
        self.peers.values().find(|p| p.is_named(reference))
    }

    /// The peer with this peer ID (current or former).
    pub fn find_peer(&self, peer_id: &str) -> Option<&Peer> {
        self.peers.values().find(|p| p.id == peer_id || p.former_ids.iter().any(|f| f == peer_id))
    }

    /// Adds a placeholder for a seed host the scheduler is triggering (state
    /// back-to-source, no pieces), replacing any earlier peer of that host;
    /// returns its generation.
    pub fn add_seed_placeholder(&mut self, seed_host: &str, now: Instant) -> u64 {
        let generation = super::peer::next_generation();
        let mut peer = Peer::new(format!("seed-{seed_host}"), seed_host.to_string(), generation, now);
        peer.state = PeerState::BackToSource;
        peer.placeholder = true;
        if let Some(mut old) = self.peers.remove(seed_host) {
            old.evict();
            peer.inherit_ids(&old);
        }
        self.peers.insert(seed_host.to_string(), peer);
        self.updated_at = now;
        generation
    }

    /// Non-seed peers fetching from the origin, except `except_host`.
    pub fn back_to_source_count(&self, except_host: &str, is_seed: impl Fn(&str) -> bool) -> usize {
        self.peers
            .values()
            .filter(|p| p.state == PeerState::BackToSource && p.host_id != except_host && !is_seed(&p.host_id))
            .count()
    }

    /// Reference digests as the proto map.
    pub fn digests_proto(&self) -> HashMap<u32, String> {
        self.digests.iter().map(|(n, d)| (*n, d.to_string())).collect()
    }

    /// Checks `present_pieces` of a registration: kept only when the geometry
    /// is known (else they cannot be checked and are dropped), and then every
    /// number must be in range.
    pub fn present_pieces(&self, numbers: &[u32]) -> Result<PieceSet, Error> {
        let mut set = PieceSet::default();
        let Some(count) = self.piece_count() else {
            return Ok(set);
        };
        for &n in numbers {
            if n >= count {
                return Err(Error::PieceOutOfRange { number: n, count });
            }
            set.insert(n);
        }
        Ok(set)
    }

    /// Records a piece the peer on `host` fetched from the origin: fixes the
    /// geometry on the first report, checks later ones against it.
    pub fn record_origin_piece(&mut self, host: &str, piece: &OriginPiece) -> Result<OriginOutcome, Error> {
        let state = self.peers.get(host).map(|p| p.state);
        if state != Some(PeerState::BackToSource) {
            return Err(Error::OutOfOrder(format!(
                "download_piece_back_to_source_finished from a peer that is not fetching from the origin (state {})",
                state.map_or("unknown", PeerState::name)
            )));
        }
        let pl = piece.piece_length;
        check_geometry(piece.content_length.unwrap_or(0), pl).map_err(Error::Geometry)?;
        if let Some(task_pl) = self.piece_length
            && task_pl != pl
        {
            return Err(Error::Geometry(format!("piece length {pl} differs from the task's {task_pl}")));
        }
        if let (Some(known), Some(given)) = (self.content_length, piece.content_length)
            && known != given
        {
            return Err(Error::Geometry(format!("content length {given} differs from the task's {known}")));
        }
        let content_length = self.content_length.or(piece.content_length);
        let n = piece.number;
        let count = content_length.map_or(MAX_PIECE_COUNT, |len| piece_count(len, pl));
        if n >= count {
            return Err(Error::PieceOutOfRange { number: n, count });
        }
        if let Some((&last, _)) = self.digests.last_key_value()
            && last >= count
        {
            return Err(Error::Geometry(format!(
                "content length {} leaves piece {last}, already reported, out of range",
                content_length.unwrap_or_default()
            )));
        }
        let offset = n as u64 * pl;
        if piece.offset != offset {
            return Err(Error::Geometry(format!("piece {n}: offset {} should be {offset}", piece.offset)));
        }
        let length_ok = match content_length {
            Some(len) => piece.length == piece_range(n, len, pl).1,
            None => (1..=pl).contains(&piece.length),
        };
        if !length_ok {
            return Err(Error::Geometry(format!(
                "piece {n}: length {} does not fit the task's geometry",
                piece.length
            )));
        }

        self.piece_length = Some(pl);
        self.content_length = content_length;
        let outcome = match self.digests.get(&n) {
            None => {
                self.digests.insert(n, piece.digest);
                OriginOutcome::NewReference
            }
            Some(d) if *d == piece.digest => OriginOutcome::Known,
            Some(d) => {
                let reference = *d;
                self.distrust(host);
                return Ok(OriginOutcome::Conflict(reference));
            }
        };
        if let Some(peer) = self.peers.get_mut(host) {
            peer.pieces.insert(n);
        }
        Ok(outcome)
    }

    /// Blocklists `host` for this task: its peer fails (holding nothing,
    /// fetching nothing from the origin), no child keeps it as a parent, and
    /// it is never a candidate parent or origin fetcher of the task again.
    pub fn distrust(&mut self, host: &str) {
        if self.distrusted.len() < MAX_DISTRUSTED {
            self.distrusted.insert(host.to_string());
        }
        for peer in self.peers.values_mut() {
            if peer.host_id == host {
                peer.state = PeerState::Failed;
                peer.pieces = PieceSet::default();
                peer.parents.clear();
                peer.may_back_to_source = false;
            } else {
                peer.parents.retain(|p| p != host);
            }
        }
    }

    /// Whether `host` was blocklisted for this task.
    pub fn distrusts(&self, host: &str) -> bool {
        self.distrusted.contains(host)
    }

    /// Records a piece the peer on `host` got from a parent: it must be in
    /// range and carry the reference digest. Returns the piece's length.
    pub fn record_peer_piece(&mut self, host: &str, number: u32, digest: &Digest) -> Result<PeerPiece, Error> {
        if let Some(count) = self.piece_count()
            && number >= count
        {
            return Err(Error::PieceOutOfRange { number, count });
        }
        match self.digests.get(&number) {
            None => return Err(Error::NoReferenceDigest(number)),
            Some(d) if d != digest => return Err(Error::DigestMismatch(number)),
            Some(_) => {}
        }
        let new = self.peers.get_mut(host).is_some_and(|peer| peer.pieces.insert(number));
        let pl = self.piece_length.unwrap_or_default();
        Ok(PeerPiece { length: self.content_length.map_or(pl, |len| piece_range(number, len, pl).1), new })
    }

    /// The peer on `host` completed: its totals must match the task (an origin
    /// fetcher may be the one that tells the length of a streamed origin, or
    /// of empty content). It then holds every piece.
    pub fn record_finished(
        &mut self,
        host: &str,
        content_length: u64,
        pieces: u32,
        content_digest: Option<&Digest>,
    ) -> Result<(), Error> {
        if let (Some(d), Ok(expected)) = (content_digest, self.id.as_str().parse::<Digest>())
            && *d != expected
        {
            return Err(Error::InvalidArgument(format!(
                "content digest {d} does not match the task's digest {expected}"
            )));
        }
        let count = match (self.content_length, self.piece_length) {
            (Some(known), _) if known != content_length => {
                return Err(Error::Geometry(format!(
                    "finished with content length {content_length}; the task has {known} bytes"
                )));
            }
            (Some(_), _) => self.piece_count().unwrap_or_default(),
            (None, Some(pl)) => {
                let count = check_geometry(content_length, pl).map_err(Error::Geometry)?;
                if let Some((&last, _)) = self.digests.last_key_value()
                    && last >= count
                {
                    return Err(Error::Geometry(format!(
                        "content length {content_length} leaves piece {last}, already reported, out of range"
                    )));
                }
                count
            }
            (None, None) if content_length == 0 => 0,
            (None, None) => {
                return Err(Error::Geometry(format!(
                    "finished with content length {content_length} before any piece was reported from the origin"
                )));
            }
        };
        if pieces != count {
            return Err(Error::Geometry(format!("finished with {pieces} pieces; the task has {count}")));
        }
        self.content_length = Some(content_length);
        if let Some(peer) = self.peers.get_mut(host) {
            peer.state = PeerState::Succeeded;
            peer.pieces = PieceSet::full(count);
            peer.parents.clear();
        }
        Ok(())
    }

    /// Task summary for `StatTask`.
    pub fn info(&self) -> darter_proto::scheduler::v1::TaskInfo {
        let count_state = |s: PeerState| self.peers.values().filter(|p| p.state == s).count() as u32;
        darter_proto::scheduler::v1::TaskInfo {
            id: self.id.to_string(),
            url: self.url.clone(),
            content_length: self.content_length,
            piece_length: self.piece_length.unwrap_or_default(),
            piece_count: self.piece_count(),
            peer_count: self.peers.len() as u32,
            back_to_source_count: count_state(PeerState::BackToSource),
            succeeded_peer_count: count_state(PeerState::Succeeded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PL: u64 = 262_144;

    fn task_with(peers: &[(&str, PeerState)]) -> Task {
        let now = Instant::now();
        let mut t = Task::new(TaskId::parse(&"a".repeat(64)).unwrap(), "http://o/f".into(), now);
        for (i, (host, state)) in peers.iter().enumerate() {
            let mut p = Peer::new(format!("peer-{host}"), host.to_string(), i as u64, now);
            p.state = *state;
            t.peers.insert(host.to_string(), p);
        }
        t
    }

    fn origin(number: u32, data: &[u8], content_length: Option<u64>) -> OriginPiece {
        let offset = number as u64 * PL;
        let length = content_length.map_or(PL, |l| piece_range(number, l, PL).1);
        OriginPiece { number, offset, length, digest: Digest::of(data), content_length, piece_length: PL }
    }

    #[test]
    fn first_origin_report_fixes_geometry_and_reference() {
        let mut t = task_with(&[("a", PeerState::BackToSource), ("b", PeerState::BackToSource)]);
        let len = Some(3 * PL - 10);
        assert_eq!(t.record_origin_piece("a", &origin(0, b"x", len)).unwrap(), OriginOutcome::NewReference);
        assert_eq!(t.piece_count(), Some(3));
        assert_eq!(t.record_origin_piece("b", &origin(0, b"x", len)).unwrap(), OriginOutcome::Known);
        let other = Digest::of(b"x");
        assert_eq!(t.record_origin_piece("b", &origin(0, b"y", len)).unwrap(), OriginOutcome::Conflict(other));
        assert_eq!(t.digests[&0], other, "first digest wins");
        assert!(t.distrusts("b"), "the conflicting sender is blocklisted for the task");
        let b = &t.peers["b"];
        assert_eq!((b.state, b.pieces.len(), b.may_back_to_source), (PeerState::Failed, 0, false));
        assert!(
            matches!(t.record_origin_piece("b", &origin(1, b"y", len)), Err(Error::OutOfOrder(_))),
            "it reports nothing from the origin any more"
        );
        // last piece is short
        let mut last = origin(2, b"z", len);
        assert_eq!(last.length, PL - 10);
        t.record_origin_piece("a", &last).unwrap();
        last.length = PL;
        assert!(matches!(t.record_origin_piece("a", &last), Err(Error::Geometry(_))));
    }

    #[test]
    fn origin_reports_that_disagree_change_nothing() {
        let mut t = task_with(&[("a", PeerState::BackToSource), ("r", PeerState::Running)]);
        let len = Some(3 * PL);
        t.record_origin_piece("a", &origin(0, b"x", len)).unwrap();
        let before = (t.content_length, t.piece_length, t.digests.clone());
        let err = |t: &mut Task, p: OriginPiece| t.record_origin_piece("a", &p).unwrap_err();
        assert!(matches!(err(&mut t, origin(3, b"x", len)), Error::PieceOutOfRange { number: 3, count: 3 }));
        assert!(matches!(err(&mut t, origin(1, b"x", Some(4 * PL))), Error::Geometry(_)));
        assert!(matches!(
            err(&mut t, OriginPiece { piece_length: 2 * PL, ..origin(1, b"x", len) }),
            Error::Geometry(_)
        ));
        assert!(matches!(err(&mut t, OriginPiece { piece_length: 1, ..origin(1, b"x", len) }), Error::Geometry(_)));
        assert!(matches!(err(&mut t, OriginPiece { offset: 7, ..origin(1, b"x", len) }), Error::Geometry(_)));
        assert!(matches!(
            t.record_origin_piece("r", &origin(1, b"x", len)).unwrap_err(),
            Error::OutOfOrder(m) if m.contains("state running")
        ));
        assert_eq!(before, (t.content_length, t.piece_length, t.digests.clone()));
    }

    #[test]
    fn streamed_origin_learns_length_at_the_end() {
        let mut t = task_with(&[("a", PeerState::BackToSource)]);
        t.record_origin_piece("a", &origin(0, b"x", None)).unwrap();
        t.record_origin_piece("a", &OriginPiece { length: 5, ..origin(1, b"y", None) }).unwrap();
        assert_eq!(t.piece_count(), None);
        assert!(matches!(t.record_finished("a", PL + 5, 3, None), Err(Error::Geometry(_))));
        assert!(
            matches!(t.record_finished("a", 10, 1, None), Err(Error::Geometry(_))),
            "piece 1 would be out of range"
        );
        t.record_finished("a", PL + 5, 2, None).unwrap();
        assert_eq!(t.piece_count(), Some(2));
        assert_eq!(t.peers["a"].state, PeerState::Succeeded);
        assert_eq!(t.peers["a"].pieces.len(), 2);
    }

    #[test]
    fn empty_content_and_digest_addressed_tasks() {
        let mut t = task_with(&[("a", PeerState::BackToSource)]);
        assert!(matches!(t.record_finished("a", 5, 1, None), Err(Error::Geometry(_))));
        t.record_finished("a", 0, 0, None).unwrap();
        assert_eq!(t.piece_count(), Some(0));
        let d = Digest::of(b"");
        let mut t = task_with(&[("a", PeerState::BackToSource)]);
        t.id = TaskId::from_digest(&d);
        assert!(matches!(t.record_finished("a", 0, 0, Some(&Digest::of(b"x"))), Err(Error::InvalidArgument(_))));
        t.record_finished("a", 0, 0, Some(&d)).unwrap();
    }

    #[test]
    fn peer_pieces_need_the_reference_digest() {
        let mut t = task_with(&[("a", PeerState::BackToSource), ("b", PeerState::Running)]);
        let len = Some(3 * PL);
        t.record_origin_piece("a", &origin(0, b"x", len)).unwrap();
        assert_eq!(t.record_peer_piece("b", 0, &Digest::of(b"x")).unwrap(), PeerPiece { length: PL, new: true });
        assert_eq!(t.record_peer_piece("b", 0, &Digest::of(b"x")).unwrap(), PeerPiece { length: PL, new: false });
        assert!(t.peers["b"].pieces.contains(0));
        assert_eq!(t.record_peer_piece("b", 0, &Digest::of(b"forged")), Err(Error::DigestMismatch(0)));
        assert_eq!(t.record_peer_piece("b", 1, &Digest::of(b"x")), Err(Error::NoReferenceDigest(1)));
        assert_eq!(t.record_peer_piece("b", 9, &Digest::of(b"x")), Err(Error::PieceOutOfRange { number: 9, count: 3 }));
        assert!(!t.peers["b"].pieces.contains(1));
    }

    #[test]
    fn present_pieces_are_bounded() {
        let mut t = task_with(&[("a", PeerState::BackToSource)]);
        assert!(t.present_pieces(&[0, 5, 1_000_000]).unwrap().is_empty(), "unknown geometry: dropped");
        t.record_origin_piece("a", &origin(0, b"x", Some(3 * PL))).unwrap();
        assert_eq!(t.present_pieces(&[0, 2]).unwrap().len(), 2);
        assert!(matches!(t.present_pieces(&[3]), Err(Error::PieceOutOfRange { number: 3, count: 3 })));
    }
}
