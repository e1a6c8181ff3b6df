//! Downloading a task from parents.
//!
//! Each parent streams the pieces it holds (`SyncPieces`), live, so a piece
//! can be fetched from a parent the moment the parent has it. Pieces are
//! chosen rarest first (keeps the swarm diverse), fetched over the parents'
//! piece servers, verified against the digest the scheduler published (never
//! the parent's word), written, and reported. When every piece that is left
//! is already in flight, idle parents fetch duplicates (endgame), so one slow
//! parent cannot hold up the end. Failing, lying or stalled parents are
//! dropped and the scheduler is asked for others; when it says so (or it is
//! gone and no parent is left) the rest comes from the origin.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use darter_common::digest::Digest;
use darter_common::piece::{check_geometry, piece_count, piece_range};
use darter_proto::dfdaemon::v1::{SyncPiecesRequest, dfdaemon_upload_client::DfdaemonUploadClient};
use darter_proto::scheduler::v1::announce_peer_request::Request as Req;
use darter_proto::scheduler::v1::announce_peer_response::Response as Resp;
use darter_proto::scheduler::v1::{self as spb, NormalTaskResponse};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::announcer::Announcer;
use super::back_to_source::{NewPiece, join_err};
use super::piece_bits::{PieceBits, first_out_of_range};
use super::piece_map::PieceMap;
use super::progress::Progress;
use super::spec::DownloadSpec;
use crate::config::P2pConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::piece_client::{FetchError, PieceClient, Source};
use crate::piece_server::piece_path;
use crate::storage::{Lease, Shape, Storage};

/// Network failures after which a parent is dropped.
const MAX_PARENT_FAILURES: u32 = 3;
/// Events handled together before the pieces are scheduled again.
const EVENT_BATCH: usize = 64;
/// How long a parent whose upload slots are full is left alone.
const BUSY_BACKOFF: Duration = Duration::from_millis(50);
/// Shortest and longest wait between two reschedules that found no parent.
const RESCHEDULE_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(5));

/// How a peer-to-peer attempt ended.
#[derive(Debug)]
pub enum P2pEnd {
    /// Every piece is stored and verified.
    Complete(Lease),
    /// Fetch the rest from the origin (the scheduler said so, or it is gone
    /// and no parent is left); the reason is for the log.
    BackToSource(String),
}

/// What a P2P download needs.
pub struct P2p<'a> {
    /// Storage.
    pub storage: &'a Arc<Storage>,
    /// Limits.
    pub config: &'a P2pConfig,
    /// Client for parents' piece servers.
    pub pieces: &'a Arc<PieceClient>,
    /// This host.
    pub host_id: &'a str,
    /// The schedulers' client, which also dials parents (with this member's TLS).
    pub scheduler: &'a crate::scheduler_client::SchedulerClient,
    /// The download.
    pub spec: &'a DownloadSpec,
    /// Its progress.
    pub progress: &'a Progress,
    /// Metrics.
    pub metrics: &'a Metrics,
}

struct Parent {
    peer_id: String,
    host_id: String,
    /// A seed peer: other parents with room are asked first (the seed's
    /// upload is best spent on pieces the swarm lacks).
    seed: bool,
    /// The parent's piece server, and the scheduler's grant to fetch from it.
    source: Source,
    available: PieceBits,
    /// Requests to this parent whose body has not arrived yet.
    inflight: usize,
    /// Requests this parent takes at once: halved when it says it is busy,
    /// grown back by one per piece it serves (up to `p2p.per_parent`).
    cap: usize,
    failures: u32,
    alive: bool,
    /// Set aside because it refused the grant ([`State::set_aside`]).
    refused_grant: bool,
    complete: bool,
    busy_until: Option<Instant>,
    /// Its piece stream; none for a parent that held every piece when it
    /// was offered (there is nothing left for it to tell).
    sync: Option<JoinHandle<()>>,
    /// What this parent did for the download, for the log at its end.
    record: ParentRecord,
}

/// One parent's part in a download: when it was offered, when its piece
/// stream first answered, what it served, how often it was busy.
struct ParentRecord {
    offered: Instant,
    first_sync: Option<Duration>,
    first_piece: Option<Duration>,
    /// Piece lists (`SyncPieces` messages) received from it.
    lists: u32,
    pieces: u32,
    busy: u32,
}

impl ParentRecord {
    fn new() -> Self {
        Self { offered: Instant::now(), first_sync: None, first_piece: None, lists: 0, pieces: 0, busy: 0 }
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        if let Some(sync) = &self.sync {
            sync.abort();
        }
    }
}

enum Event {
    Sync {
        parent: usize,
        pieces: Vec<u32>,
        content_length: Option<u64>,
        piece_length: u64,
        complete: bool,
    },
    SyncEnded {
        parent: usize,
        error: Option<String>,
    },
    /// A piece's body has arrived from `parent`: its request no longer
    /// occupies the parent (the next one may go out while this piece is
    /// verified and written).
    Received {
        parent: usize,
    },
    /// A piece request ended; `received` when [`Event::Received`] was sent for it.
    Piece {
        parent: usize,
        number: u32,
        result: std::result::Result<NewPiece, PieceError>,
        received: bool,
    },
}

enum PieceError {
    /// The parent's upload slots are full: not its fault.
    Busy,
    /// The parent refused the grant (expired, or this parent does not
    /// recognise the scheduler): fresh parents come with a reschedule.
    Refused,
    Network(String),
    DigestMismatch(Digest),
    Storage(Error),
}

#[derive(Default)]
struct State {
    parents: Vec<Parent>,
    digests: PieceMap<Digest>,
    geometry: Option<(u64, u64)>,
    entry: Option<Lease>,
    missing: BTreeSet<u32>,
    /// Parents fetching each piece in flight: an entry stays until the
    /// request has ended, also while its piece is verified and written.
    inflight: PieceMap<Vec<usize>>,
    blocklist: HashSet<String>,
    rescheduling: bool,
    next_reschedule: Option<Instant>,
    reschedule_backoff: Duration,
    /// Piece requests in flight; aborted when the download ends.
    fetches: tokio::task::JoinSet<()>,
    /// A random rank per piece, this peer's own: orders equally rare pieces
    /// differently on every peer, so peers that see the same parents do not
    /// all ask for the same piece first.
    rank: Vec<u64>,
}

impl State {
    /// Requests not finished: in the network, or received and being
    /// verified and written. `p2p.concurrency` bounds these (not only those
    /// in the network), so received pieces waiting for a busy CPU cannot
    /// pile up in memory (1 GiB at 16 peers on two cores: 159 MiB peak RSS
    /// when only the network side was bounded).
    fn outstanding(&self) -> usize {
        self.inflight.values().map(Vec::len).sum()
    }

    /// Pieces this peer holds (what it tells parents in `x-darter-have`).
    fn held(&self) -> u32 {
        (self.rank.len() - self.missing.len()) as u32
    }

    fn alive_parents(&self) -> usize {
        self.parents.iter().filter(|p| p.alive).count()
    }

    /// Piece numbers from the network must be below this: the task's piece
    /// count once the scheduler told the geometry, else `max` (`p2p.max_piece_count`).
    fn piece_bound(&self, max: u32) -> u32 {
        self.geometry.map_or(max, |(len, pl)| piece_count(len, pl))
    }

    fn drop_parent(&mut self, idx: usize) {
        self.set_aside(idx);
        let p = &mut self.parents[idx];
        p.refused_grant = false;
        self.blocklist.insert(p.host_id.clone());
    }

    /// Stops using a parent whose grant it refused, without blocklisting
    /// it or naming it bad to the scheduler: a later answer that offers it
    /// again (with a fresh grant) adds it back.
    fn set_aside(&mut self, idx: usize) {
        let p = &mut self.parents[idx];
        p.alive = false;
        p.refused_grant = true;
        if let Some(sync) = &p.sync {
            sync.abort();
        }
        p.available = PieceBits::default();
    }
}

impl P2p<'_> {
    /// Runs the download from the scheduler's first answer until it completes
    /// or must go back to the origin.
    pub async fn run(&self, announcer: &mut Announcer, first: NormalTaskResponse) -> Result<P2pEnd> {
        let start = Instant::now();
        let (events, mut rx) = mpsc::channel(256);
        let mut st = State { reschedule_backoff: RESCHEDULE_BACKOFF.0, ..Default::default() };
        self.apply_parents(&mut st, first, &events);
        self.ensure_entry(&mut st).await?;
        announcer.reporter.send(Req::DownloadPeerStarted(spb::DownloadPeerStartedRequest {}));
        let mut scheduler_alive = true;
        let mut last_progress = Instant::now();
        let stall = tokio::time::sleep_until((last_progress + self.config.stall_timeout).into());
        tokio::pin!(stall);
        loop {
            if let Some(entry) = &st.entry
                && st.missing.is_empty()
            {
                tracing::info!(task_id = %self.spec.task_id, parents = %parents_summary(&st.parents, start), "pieces from parents");
                return Ok(P2pEnd::Complete(entry.clone()));
            }
            self.schedule(&mut st, &events);
            if st.alive_parents() == 0 && !st.rescheduling {
                if !scheduler_alive {
                    return Ok(P2pEnd::BackToSource("the scheduler is gone and no parent is left".into()));
                }
                if st.next_reschedule.is_none_or(|t| Instant::now() >= t) {
                    self.reschedule(&mut st, announcer, "no parent left");
                }
            }
            let stall_at = last_progress + self.config.stall_timeout;
            if stall.deadline() != stall_at.into() {
                stall.as_mut().reset(stall_at.into());
            }
            // Wake for parents that are still busy and for a deferred
            // reschedule. A pause that is over is cleared: waking for a
            // deadline in the past would spin this loop.
            let now = Instant::now();
            for p in &mut st.parents {
                if p.busy_until.is_some_and(|t| t <= now) {
                    p.busy_until = None;
                }
            }
            let wake = st
                .parents
                .iter()
                .filter_map(|p| p.busy_until.filter(|_| p.alive))
                .chain(st.next_reschedule.filter(|_| !st.rescheduling && st.alive_parents() == 0))
                .min();
            let wakeup = async move {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(event) = rx.recv() => {
                    // Handle everything that is waiting before scheduling
                    // again: one pass over the pieces per batch, not per event.
                    let mut progressed = self.handle(&mut st, event, announcer).await?;
                    for _ in 0..EVENT_BATCH {
                        let Ok(event) = rx.try_recv() else { break };
                        progressed |= self.handle(&mut st, event, announcer).await?;
                    }
                    if progressed {
                        last_progress = Instant::now();
                    }
                }
                response = announcer.next(), if scheduler_alive => match response {
                    Some(Ok(Resp::NormalTask(n))) => {
                        st.rescheduling = false;
                        let before = st.alive_parents();
                        self.apply_parents(&mut st, n, &events);
                        self.ensure_entry(&mut st).await?;
                        if st.alive_parents() > before {
                            st.reschedule_backoff = RESCHEDULE_BACKOFF.0;
                        }
                    }
                    Some(Ok(Resp::PieceDigests(d))) => {
                        self.add_digests(&mut st, &d.piece_digests);
                        self.learn_geometry(&mut st, d.content_length, d.piece_length);
                        self.ensure_entry(&mut st).await?;
                    }
                    Some(Ok(Resp::NeedBackToSource(n))) => return Ok(P2pEnd::BackToSource(n.description)),
                    Some(Ok(Resp::EmptyTask(_))) => return Ok(P2pEnd::BackToSource("the task is empty".into())),
                    Some(Err(status)) if is_transport_failure(&status) => {
                        tracing::warn!(task_id = %self.spec.task_id, error = %status.message(), "scheduler stream failed; going on with the parents we have");
                        scheduler_alive = false;
                    }
                    Some(Err(status)) => return Err(Error::SchedulerRefused(status.message().to_string())),
                    None => scheduler_alive = false,
                },
                _ = wakeup => {}
                _ = &mut stall => {
                    if !scheduler_alive {
                        return Ok(P2pEnd::BackToSource("no progress from parents and no scheduler".into()));
                    }
                    let stalled: Vec<usize> = (0..st.parents.len()).filter(|&i| st.parents[i].alive && st.parents[i].inflight > 0).collect();
                    for i in stalled {
                        st.drop_parent(i);
                    }
                    self.reschedule(&mut st, announcer, "no progress from parents");
                    last_progress = Instant::now();
                }
            }
        }
    }

    /// Takes content and piece length from the scheduler (never from a parent).
    fn learn_geometry(&self, st: &mut State, content_length: Option<u64>, piece_length: u64) {
        if st.geometry.is_none()
            && let Some(len) = content_length
            && piece_length > 0
        {
            st.geometry = Some((len, piece_length));
        }
    }

    fn reschedule(&self, st: &mut State, announcer: &Announcer, why: &str) {
        let bad = st.parents.iter().filter(|p| !p.alive && !p.refused_grant).map(|p| p.peer_id.clone()).collect();
        tracing::info!(task_id = %self.spec.task_id, why, "asking the scheduler for other parents");
        announcer.reporter.send(Req::ReschedulePeer(spb::ReschedulePeerRequest {
            bad_parent_peer_ids: bad,
            description: why.to_string(),
        }));
        st.rescheduling = true;
        // If the answer brings no parent, wait longer before asking again.
        st.next_reschedule = Some(Instant::now() + st.reschedule_backoff);
        st.reschedule_backoff = (st.reschedule_backoff * 2).min(RESCHEDULE_BACKOFF.1);
    }

    fn add_digests(&self, st: &mut State, digests: &HashMap<u32, String>) {
        let bound = st.piece_bound(self.config.max_piece_count);
        if let Some(n) = first_out_of_range(digests.keys().copied(), bound) {
            tracing::warn!(task_id = %self.spec.task_id, piece = n, pieces = bound, "scheduler sent digests of pieces past the end of the task; ignoring those");
        }
        for (n, d) in digests.iter().filter(|(n, _)| **n < bound) {
            match d.parse::<Digest>() {
                Ok(d) => {
                    st.digests.insert(*n, d);
                }
                Err(e) => {
                    tracing::warn!(task_id = %self.spec.task_id, piece = n, error = %e, "scheduler sent a bad digest")
                }
            }
        }
    }

    fn apply_parents(&self, st: &mut State, n: NormalTaskResponse, events: &mpsc::Sender<Event>) {
        self.add_digests(st, &n.piece_digests);
        self.learn_geometry(st, n.content_length, n.piece_length);
        let bound = st.piece_bound(self.config.max_piece_count);
        for c in n.candidate_parents {
            let Some(host) = c.host else { continue };
            if !c.grant.bytes().all(|b| b.is_ascii_hexdigit()) {
                tracing::warn!(task_id = %self.spec.task_id, parent = %host.id, "candidate parent comes with a malformed grant; skipping it");
                continue;
            }
            if let Some(bad) = first_out_of_range(c.pieces.iter().copied(), bound) {
                tracing::warn!(task_id = %self.spec.task_id, parent = %host.id, piece = bad, pieces = bound, "candidate parent holds a piece past the end of the task; skipping it");
                continue;
            }
            if let Some(known) = st.parents.iter_mut().find(|p| p.alive && p.host_id == host.id) {
                // A parent offered again brings a fresh grant, and what it
                // held then (in case its piece stream told us nothing yet).
                if !c.grant.is_empty() {
                    known.source.grant = c.grant.into();
                }
                known.available.extend(c.pieces);
                continue;
            }
            if host.id == self.host_id || st.blocklist.contains(&host.id) || host.download_port == 0 {
                continue;
            }
            let (Ok(ip), Ok(port)) = (host.ip.parse::<IpAddr>(), u16::try_from(host.download_port)) else {
                tracing::warn!(task_id = %self.spec.task_id, parent = %host.id, ip = %host.ip, port = host.download_port, "candidate parent has no usable piece address; skipping it");
                continue;
            };
            let idx = st.parents.len();
            let piece_addr = SocketAddr::new(ip, port);
            let available: PieceBits = c.pieces.into_iter().collect();
            // A parent that already holds every piece has nothing to tell
            // on a piece stream: no stream, no handshake for it (late in a
            // flash crowd most parents offered are peers that finished).
            let complete = st.geometry.is_some_and(|(len, pl)| available.count() == piece_count(len, pl));
            let sync = (!complete).then(|| {
                let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}:{}", host.ip, host.port))
                    .map(|e| self.scheduler.parent_channel(e.connect_timeout(std::time::Duration::from_secs(2))));
                tokio::spawn(sync_parent(
                    idx,
                    endpoint.map_err(|e| e.to_string()),
                    self.spec.task_id.to_string(),
                    self.host_id.to_string(),
                    events.clone(),
                ))
            });
            st.parents.push(Parent {
                peer_id: c.peer_id,
                host_id: host.id,
                seed: c.is_seed,
                source: Source { addr: piece_addr, encrypted: host.encrypted_pieces, grant: c.grant.into() },
                available,
                inflight: 0,
                cap: self.config.per_parent,
                failures: 0,
                alive: true,
                refused_grant: false,
                complete,
                busy_until: None,
                sync,
                record: ParentRecord::new(),
            });
        }
    }

    /// Opens the task in storage once its geometry is known.
    async fn ensure_entry(&self, st: &mut State) -> Result<()> {
        let Some((len, piece_length)) = st.geometry else { return Ok(()) };
        if st.entry.is_some() {
            return Ok(());
        }
        let count = check_geometry(len, piece_length).map_err(Error::OriginProtocol)?;
        if count > self.config.max_piece_count {
            return Err(Error::LimitExceeded(format!(
                "the task has {count} pieces, more than p2p.max_piece_count ({})",
                self.config.max_piece_count
            )));
        }
        // What was taken in under the configured most before the count was known.
        st.digests.retain(|n, _| *n < count);
        for p in &mut st.parents {
            p.available.truncate(count);
        }
        let (storage, id, url) =
            (self.storage.clone(), self.spec.task_id.clone(), crate::backend::redacted(&self.spec.url));
        let shape = Shape { content_length: Some(len), piece_length, validator: None };
        let digests = st.digests.clone();
        let lease = tokio::task::spawn_blocking(move || {
            let lease = storage.open_task(&id, &url, shape.clone())?;
            // Pieces kept from an earlier attempt must be of this content.
            let stale = lease.pieces().iter().any(|p| digests.get(&p.number).is_some_and(|d| *d != p.digest));
            if !stale {
                return Ok(lease);
            }
            tracing::warn!(task_id = %id, "stored pieces do not match the reference digests; starting over");
            drop(lease);
            storage.remove(&id, true)?;
            storage.open_task(&id, &url, shape)
        })
        .await
        .map_err(join_err)??;
        self.progress.started(&lease);
        let random = std::hash::RandomState::new();
        st.rank = (0..piece_count(len, piece_length)).map(|n| random.hash_one(n)).collect();
        st.missing = lease.missing_pieces().into_iter().collect();
        st.entry = Some(lease);
        Ok(())
    }

    /// Starts piece requests up to the limits: rarest first (equally rare
    /// pieces in this peer's own random order), from a parent that is not a
    /// seed when one with room holds the piece (rarest first fills the
    /// seed's slots with the pieces only it holds), then endgame duplicates
    /// of pieces already in flight.
    fn schedule(&self, st: &mut State, events: &mpsc::Sender<Event>) {
        let Some(entry) = st.entry.clone() else { return };
        let mut total = st.outstanding();
        if total >= self.config.concurrency {
            return;
        }
        let now = Instant::now();
        let has_room = |p: &Parent| p.alive && p.inflight < p.cap && p.busy_until.is_none_or(|t| t <= now);
        if !st.parents.iter().any(has_room) {
            return;
        }
        let mut wanted: Vec<(usize, u64, u32)> = st
            .missing
            .iter()
            .filter(|n| !st.inflight.contains_key(n) && st.digests.contains_key(n))
            .map(|&n| (st.parents.iter().filter(|p| p.alive && p.available.contains(n)).count(), n))
            .filter(|(holders, _)| *holders > 0)
            .map(|(holders, n)| (holders, st.rank.get(n as usize).copied().unwrap_or_default(), n))
            .collect();
        wanted.sort_unstable();
        if wanted.is_empty() {
            wanted = endgame_duplicates(&st.missing, &st.inflight).into_iter().map(|n| (0, 0, n)).collect();
        }
        for (_, _, number) in wanted {
            if total >= self.config.concurrency {
                break;
            }
            let busy = st.inflight.get(&number).cloned().unwrap_or_default();
            let choice = (0..st.parents.len())
                .filter(|&i| has_room(&st.parents[i]) && st.parents[i].available.contains(number) && !busy.contains(&i))
                .min_by_key(|&i| (st.parents[i].seed, st.parents[i].inflight, st.parents[i].failures));
            let Some(parent) = choice else { continue };
            let (len, piece_length) = st.geometry.expect("entry implies geometry");
            let (offset, length) = piece_range(number, len, piece_length);
            let digest = st.digests[&number];
            st.parents[parent].inflight += 1;
            st.inflight.entry(number).or_default().push(parent);
            total += 1;
            let path = piece_path(&self.spec.task_id, number);
            let have = st.held();
            let receive = receive_piece(
                self.pieces.clone(),
                st.parents[parent].source.clone(),
                path,
                length,
                have,
                self.config.piece_timeout,
            );
            let (entry, events) = (entry.clone(), events.clone());
            st.fetches.spawn(async move {
                let (result, received) = match receive.await {
                    Ok(bytes) => {
                        let _ = events.send(Event::Received { parent }).await;
                        (store_piece(bytes, entry, number, offset, length, digest).await, true)
                    }
                    Err(e) => (Err(e), false),
                };
                let _ = events.send(Event::Piece { parent, number, result, received }).await;
            });
        }
    }

    /// Applies an event; returns whether a piece was completed.
    async fn handle(&self, st: &mut State, event: Event, announcer: &Announcer) -> Result<bool> {
        match event {
            Event::Sync { parent, pieces, content_length, piece_length, complete } => {
                // A parent that describes another content is not a parent for this one.
                let disagrees = st.geometry.is_some_and(|(len, pl)| {
                    (content_length.is_some() && content_length != Some(len))
                        || (piece_length != 0 && piece_length != pl)
                });
                if disagrees {
                    tracing::warn!(task_id = %self.spec.task_id, parent = %st.parents[parent].host_id, "parent describes another geometry; dropping it");
                    st.drop_parent(parent);
                    return Ok(false);
                }
                // Checked before anything is stored: a parent announcing piece
                // 4294967295 must not make this peer allocate for it.
                let bound = st.piece_bound(self.config.max_piece_count);
                if let Some(bad) = first_out_of_range(pieces.iter().copied(), bound) {
                    tracing::warn!(task_id = %self.spec.task_id, parent = %st.parents[parent].host_id, piece = bad, pieces = bound, "parent announced a piece past the end of the task; dropping it");
                    st.drop_parent(parent);
                    return Ok(false);
                }
                let p = &mut st.parents[parent];
                p.available.extend(pieces);
                p.complete |= complete;
                p.record.first_sync.get_or_insert_with(|| p.record.offered.elapsed());
                p.record.lists += 1;
                Ok(false)
            }
            Event::SyncEnded { parent, error } => {
                let p = &st.parents[parent];
                if p.alive && (error.is_some() || !p.complete) {
                    let why = error.unwrap_or_else(|| "its piece stream ended before it had the task".into());
                    tracing::info!(task_id = %self.spec.task_id, parent = %p.host_id, error = %why, "lost a parent");
                    st.drop_parent(parent);
                }
                Ok(false)
            }
            Event::Received { parent } => {
                st.parents[parent].inflight -= 1;
                Ok(false)
            }
            Event::Piece { parent, number, result, received } => {
                // Reap finished request tasks (their handles stay until joined).
                while st.fetches.try_join_next().is_some() {}
                if !received {
                    st.parents[parent].inflight -= 1;
                }
                if let Some(who) = st.inflight.get_mut(&number) {
                    who.retain(|&i| i != parent);
                    if who.is_empty() {
                        st.inflight.remove(&number);
                    }
                }
                let p = &st.parents[parent];
                let (peer_id, host_id) = (p.peer_id.clone(), p.host_id.clone());
                match result {
                    Ok(piece) => {
                        let p = &mut st.parents[parent];
                        p.failures = 0;
                        p.cap = (p.cap + 1).min(self.config.per_parent);
                        p.record.first_piece.get_or_insert_with(|| p.record.offered.elapsed());
                        if !st.missing.remove(&number) {
                            self.metrics.duplicate_piece_bytes.inc_by(piece.length);
                            return Ok(false);
                        }
                        st.parents[parent].record.pieces += 1;
                        self.progress.piece_from_peer(piece);
                        self.metrics.bytes_peer(piece.length);
                        announcer.reporter.peer_piece(&piece, &peer_id, &host_id);
                        Ok(true)
                    }
                    Err(PieceError::DigestMismatch(actual)) => {
                        tracing::warn!(task_id = %self.spec.task_id, parent = %host_id, number, %actual, "piece from parent does not match its digest; dropping the parent");
                        self.metrics.digest_mismatches.inc();
                        announcer.reporter.send(Req::DownloadPieceFailed(spb::DownloadPieceFailedRequest {
                            piece_number: number,
                            parent_peer_id: peer_id,
                            digest_mismatch: true,
                            temporary: true,
                            description: format!("digest mismatch: got {actual}"),
                        }));
                        st.drop_parent(parent);
                        Ok(false)
                    }
                    Err(PieceError::Busy) => {
                        let p = &mut st.parents[parent];
                        p.record.busy += 1;
                        p.cap = (p.cap / 2).max(1);
                        p.busy_until = Some(Instant::now() + BUSY_BACKOFF);
                        Ok(false)
                    }
                    Err(PieceError::Refused) => {
                        // Most likely its grant expired (a long download):
                        // not the parent's fault. It is set aside without a
                        // blocklist, so the scheduler may hand it again,
                        // with a fresh grant.
                        if st.parents[parent].alive {
                            tracing::info!(task_id = %self.spec.task_id, parent = %host_id, number, "parent refused the piece grant; setting it aside until a fresh grant");
                            st.set_aside(parent);
                        }
                        Ok(false)
                    }
                    Err(PieceError::Network(e)) => {
                        let p = &mut st.parents[parent];
                        p.failures += 1;
                        tracing::debug!(task_id = %self.spec.task_id, parent = %host_id, number, error = %e, failures = p.failures, "piece fetch failed");
                        if p.failures >= MAX_PARENT_FAILURES && p.alive {
                            announcer.reporter.send(Req::DownloadPieceFailed(spb::DownloadPieceFailedRequest {
                                piece_number: number,
                                parent_peer_id: peer_id,
                                digest_mismatch: false,
                                temporary: true,
                                description: e,
                            }));
                            st.drop_parent(parent);
                        }
                        Ok(false)
                    }
                    Err(PieceError::Storage(e)) => Err(e),
                }
            }
        }
    }
}

/// One entry per parent: `host: pieces (offered at, then its first piece
/// list and first piece after; busy answers)`, so a slow download's log
/// shows which parents came late or were slow to start.
fn parents_summary(parents: &[Parent], start: Instant) -> String {
    let ms = |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{}ms", d.as_millis()));
    let mut out = Vec::with_capacity(parents.len());
    for p in parents {
        let r = &p.record;
        let at = r.offered.saturating_duration_since(start);
        out.push(format!(
            "{}: {} pieces (offered at {}, {} lists from +{}, piece +{}, busy {})",
            p.host_id,
            r.pieces,
            ms(Some(at)),
            r.lists,
            ms(r.first_sync),
            ms(r.first_piece),
            r.busy
        ));
    }
    out.join(", ")
}

/// Pieces worth asking a second parent for: none until every missing piece
/// is in flight (the endgame), then those in flight from one parent only.
///
/// A peer that has merely caught up with its parents (nothing new to fetch
/// yet, as often in a flash crowd) must not duplicate: each second request
/// spends a parent's upload on bytes already on their way.
fn endgame_duplicates(missing: &BTreeSet<u32>, inflight: &PieceMap<Vec<usize>>) -> Vec<u32> {
    if !missing.iter().all(|n| inflight.contains_key(n)) {
        return Vec::new();
    }
    missing.iter().copied().filter(|n| inflight.get(n).is_some_and(|who| who.len() == 1)).collect()
}

/// Fetches one piece's body from a parent, saying this peer holds `have` pieces.
async fn receive_piece(
    client: Arc<PieceClient>,
    source: Source,
    path: String,
    length: u64,
    have: u32,
    timeout: Duration,
) -> std::result::Result<bytes::Bytes, PieceError> {
    match tokio::time::timeout(timeout, client.fetch_from(&source, &path, length, have)).await {
        Err(_) => Err(PieceError::Network(format!("no piece within {timeout:?}"))),
        Ok(Err(FetchError::Busy)) => Err(PieceError::Busy),
        Ok(Err(FetchError::Status(403))) => Err(PieceError::Refused),
        Ok(Err(e)) => Err(PieceError::Network(e.to_string())),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Verifies a received piece against the reference digest and stores it.
async fn store_piece(
    bytes: bytes::Bytes,
    entry: Lease,
    number: u32,
    offset: u64,
    length: u64,
    expected: Digest,
) -> std::result::Result<NewPiece, PieceError> {
    tokio::task::spawn_blocking(move || {
        let actual = Digest::of(&bytes);
        if actual != expected || bytes.len() as u64 != length {
            return Err(PieceError::DigestMismatch(actual));
        }
        entry.write_piece(number, offset, &[&bytes], actual).map_err(PieceError::Storage)?;
        Ok(NewPiece { number, offset, length, digest: actual })
    })
    .await
    .map_err(|e| PieceError::Storage(join_err(e)))?
}

/// Follows a parent's piece availability until it completes or fails.
async fn sync_parent(
    idx: usize,
    channel: std::result::Result<tonic::transport::Channel, String>,
    task_id: String,
    host_id: String,
    events: mpsc::Sender<Event>,
) {
    let result = async {
        let channel = channel?;
        let mut stream = DfdaemonUploadClient::new(channel)
            .sync_pieces(SyncPiecesRequest { task_id, requester_host_id: host_id })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        while let Some(msg) = stream.message().await.map_err(|s| s.message().to_string())? {
            let pieces = msg.numbers.iter().copied().chain(msg.pieces.iter().map(|p| p.number)).collect();
            let event = Event::Sync {
                parent: idx,
                pieces,
                content_length: msg.content_length,
                piece_length: msg.piece_length,
                complete: msg.complete,
            };
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
        Ok::<_, String>(())
    }
    .await;
    let _ = events.send(Event::SyncEnded { parent: idx, error: result.err() }).await;
}

/// Whether a failed scheduler stream means "the scheduler is gone" (carry on
/// without it) rather than "the scheduler refuses" (stop).
pub(super) fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_only_once_everything_missing_is_in_flight() {
        let missing: BTreeSet<u32> = [3, 5, 8].into_iter().collect();
        let mut inflight: PieceMap<Vec<usize>> = PieceMap::default();
        inflight.insert(3, vec![0]);
        inflight.insert(5, vec![1, 2]);
        assert!(endgame_duplicates(&missing, &inflight).is_empty(), "piece 8 is not in flight yet: no endgame");
        inflight.insert(8, vec![1]);
        assert_eq!(endgame_duplicates(&missing, &inflight), vec![3, 8], "one request each; 5 has two already");
        inflight.insert(9, vec![0]);
        assert_eq!(endgame_duplicates(&missing, &inflight), vec![3, 8], "a piece no longer missing is not duplicated");
        assert!(endgame_duplicates(&BTreeSet::new(), &inflight).is_empty());
    }
}
