//! The messages of an announce stream (see `scheduler.proto`): the first must
//! be `register`; every later one must name the same task and host. Each
//! handler validates, changes the model under the lock, and answers through
//! the stream's bounded buffer; a rejection ends only this stream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use darter_common::digest::Digest;
use darter_proto::common::v1 as pb;
use darter_proto::scheduler::v1::announce_peer_request::Request;
use darter_proto::scheduler::v1::announce_peer_response::Response;
use darter_proto::scheduler::v1::{
    AnnouncePeerRequest, AnnouncePeerResponse, CandidateParent, DownloadPieceBackToSourceFinishedRequest,
    DownloadPieceFailedRequest, DownloadPieceFinishedRequest, NormalTaskResponse, PieceDigestsResponse,
    ReschedulePeerRequest,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::Context;
use crate::error::Error;
use crate::metrics::PieceSource;
use crate::resource::host::trigger_seeds;
use crate::resource::peer::MAX_BLOCKLIST;
use crate::resource::task::parse_piece_digest;
use crate::resource::{
    Host, OriginOutcome, OriginPiece, PeerKey, PeerState, Registration, ResponseTx, State, Task, live_task,
};
use crate::scheduling::{
    Answer, Decision, Grants, Occasion, apply, children_counts, decide, decide_exhausted, decide_without_seeds,
    introductions, response,
};

/// Longest peer or host ID a peer may name (blocklists, parents); longer ones are ignored.
const MAX_REF_LEN: usize = 255;
/// Longest free text from a peer that goes into a log line.
const MAX_LOGGED_TEXT: usize = 256;
/// How long an answer may wait for room in the peer's response buffer.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A registered stream.
#[derive(Debug)]
pub(super) struct Session {
    /// The registration.
    pub key: PeerKey,
    /// What is downloaded (for seed triggers).
    pub download: pb::Download,
    /// Cancelled when the peer is removed or replaced.
    pub evicted: CancellationToken,
    /// Counts the stream against its host's `limits.max_peers_per_host`
    /// while it lives (`None` for a seed peer).
    _slot: Option<super::StreamSlot>,
}

/// Whether the stream goes on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// Read the next message.
    Continue,
    /// The download is over: end the stream with OK.
    End,
}

/// Handles one message.
pub(super) async fn handle(
    ctx: &Context,
    caller: Option<&darter_common::tls::Identity>,
    session: &mut Option<Session>,
    message: AnnouncePeerRequest,
    tx: &ResponseTx,
) -> Result<Flow, Error> {
    let AnnouncePeerRequest { host_id, task_id, peer_id, request } = message;
    let request = request.ok_or_else(|| Error::InvalidArgument("message has no request".into()))?;
    let Some(s) = session.as_ref() else {
        let Request::Register(register) = request else {
            return Err(Error::NotRegistered);
        };
        let started = Instant::now();
        let limits = ctx.config.limits.request();
        let registration = Registration::from_request(&task_id, &host_id, &peer_id, register, &limits)?;
        let s = session.insert(register_peer(ctx, caller, registration)?);
        schedule(ctx, s, tx, started, true).await?;
        return Ok(Flow::Continue);
    };
    if task_id != s.key.task_id.as_str() {
        return Err(Error::StreamMismatch(format!(
            "task_id {task_id:?} differs from the task this stream registered ({})",
            s.key.task_id
        )));
    }
    if host_id != s.key.host_id {
        return Err(Error::StreamMismatch(format!(
            "host_id {host_id:?} differs from the host this stream registered ({})",
            s.key.host_id
        )));
    }
    match request {
        Request::Register(_) => Err(Error::OutOfOrder("register was already received on this stream".into())),
        Request::DownloadPeerStarted(_) => started(ctx, s),
        Request::DownloadPeerBackToSourceStarted(r) => back_to_source_started(ctx, s, &r.description),
        Request::ReschedulePeer(r) => reschedule(ctx, s, tx, r).await,
        Request::DownloadPieceFinished(r) => piece_finished(ctx, s, r),
        Request::DownloadPieceBackToSourceFinished(r) => origin_piece(ctx, s, r),
        Request::DownloadPieceFailed(r) => piece_failed(ctx, s, r),
        Request::DownloadPeerFinished(r) => finished(ctx, s, r.content_length, r.piece_count, None),
        Request::DownloadPeerBackToSourceFinished(r) => {
            // An empty digest means the peer did not compute one; the length checks still apply.
            let digest = match r.digest.as_str() {
                "" => None,
                d => Some(d.parse::<Digest>().map_err(|e| {
                    Error::InvalidArgument(format!("download_peer_back_to_source_finished.digest: {e}"))
                })?),
            };
            finished(ctx, s, r.content_length, r.piece_count, Some(digest))
        }
        Request::DownloadPeerFailed(r) => failed(ctx, s, &r.description, None),
        Request::DownloadPeerBackToSourceFailed(r) => failed(ctx, s, &r.description, r.origin_status),
    }
}

fn register_peer(
    ctx: &Context,
    caller: Option<&darter_common::tls::Identity>,
    reg: Registration,
) -> Result<Session, Error> {
    let (key, evicted, slot) = {
        let mut state = ctx.resources.lock();
        // A host's peers are registered by the member that announced it.
        state.check_owner(&reg.host_id, caller)?;
        // Seed peers are trusted and triggered by this scheduler: no cap.
        let slot = if state.hosts.get(&reg.host_id).is_some_and(Host::is_seed) {
            None
        } else {
            let max = ctx.config.limits.max_peers_per_host;
            Some(ctx.streams.admit(&reg.host_id, max).ok_or_else(|| {
                Error::LimitExceeded(format!(
                    "host {} already has {max} downloads registered; no more until one ends (limits.max_peers_per_host)",
                    reg.host_id
                ))
            })?)
        };
        let (key, task) = state.register(&reg, Instant::now())?;
        let evicted = task.peers.get(&key.host_id).map(|p| p.evicted.clone()).unwrap_or_default();
        (key, evicted, slot)
    };
    ctx.metrics.registered();
    tracing::info!(task_id = %key.task_id, host_id = %key.host_id, peer_id = %reg.peer_id, "peer registered");
    Ok(Session { key, download: reg.download, evicted, _slot: slot })
}

/// Locks the model and runs `f` on the stream's task (refreshing its last-seen time).
fn with_task<T>(
    ctx: &Context,
    s: &Session,
    f: impl FnOnce(&mut Task, &mut HashMap<String, Host>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut state = ctx.resources.lock();
    let State { hosts, tasks, .. } = &mut *state;
    let task = live_task(tasks, &s.key, Instant::now())?;
    f(task, hosts)
}

/// An answer waiting for room in a full response buffer.
type Pending = Option<Result<AnnouncePeerResponse, Status>>;

/// Answers a register or reschedule (rules in [`crate::scheduling::decide`]).
async fn schedule(
    ctx: &Context,
    s: &Session,
    tx: &ResponseTx,
    started: Instant,
    allow_trigger: bool,
) -> Result<(), Error> {
    enum Plan {
        Answered(&'static str, Pending),
        Trigger { seed_host: String, addr: std::net::SocketAddr, generation: u64 },
    }
    let listed = ctx.seed_peers.all();
    let plan = with_task(ctx, s, |task, hosts| {
        let seeds = if allow_trigger { trigger_seeds(hosts, &listed) } else { Vec::new() };
        Ok(match decide(task, hosts, &s.key.host_id, &ctx.scheduling(), &seeds) {
            Decision::Answer(answer) => Plan::Answered(answer.label(), answer_locked(ctx, task, hosts, s, &answer, tx)),
            Decision::TriggerSeed { host_id, addr } => {
                let generation = task.add_seed_placeholder(&host_id, Instant::now());
                Plan::Trigger { seed_host: host_id, addr, generation }
            }
        })
    })?;
    let (label, pending) = match plan {
        Plan::Answered(label, pending) => (label, pending),
        Plan::Trigger { seed_host, addr, generation } => {
            tracing::info!(task_id = %s.key.task_id, seed_host = %seed_host, seed = %addr, "triggering seed peer");
            let triggered = ctx.seeds.trigger(addr, &s.key.task_id, &s.download).await;
            ctx.metrics.seed_triggered(triggered.is_ok());
            if let Err(e) = &triggered {
                tracing::warn!(task_id = %s.key.task_id, seed = %addr, error = %e, "seed peer did not take the trigger");
                let mut state = ctx.resources.lock();
                state.remove_peer(&s.key.task_id, &seed_host, generation, Instant::now());
            }
            with_task(ctx, s, |task, hosts| {
                let answer = decide_without_seeds(task, hosts, &s.key.host_id, &ctx.scheduling());
                let label = match (&answer, &triggered) {
                    (Answer::Normal(_), Ok(())) => "seed_triggered",
                    _ => answer.label(),
                };
                Ok((label, answer_locked(ctx, task, hosts, s, &answer, tx)))
            })?
        }
    };
    ctx.metrics.decided(label, started.elapsed());
    deliver(tx, pending).await
}

/// Applies an answer and queues it while the model is still locked, so it
/// reaches the peer before any digest pushed after it. Returns the message if
/// the buffer is full (sent by [`deliver`] once unlocked).
fn answer_locked(
    ctx: &Context,
    task: &mut Task,
    hosts: &HashMap<String, Host>,
    s: &Session,
    answer: &Answer,
    tx: &ResponseTx,
) -> Pending {
    let host_id = &s.key.host_id;
    let to_origin = task.peers.get(host_id).is_some_and(|p| {
        p.may_back_to_source && p.state != PeerState::BackToSource && matches!(answer, Answer::BackToSource(_))
    });
    apply(task, host_id, answer);
    if to_origin {
        ctx.metrics.went_back_to_source();
    }
    let grants = Grants::new(ctx.grants.as_ref(), host_id);
    let message = response(task, hosts, answer, &ctx.scheduling(), &grants);
    if let Some(peer) = task.peers.get_mut(host_id)
        && peer.tx.is_none()
    {
        // From now on the peer gets digest pushes.
        peer.tx = Some(tx.clone());
    }
    tracing::debug!(task_id = %s.key.task_id, %host_id, answer = ?answer, "scheduled");
    match tx.try_send(Ok(message)) {
        Ok(()) | Err(TrySendError::Closed(_)) => None,
        Err(TrySendError::Full(message)) => Some(message),
    }
}

async fn deliver(tx: &ResponseTx, pending: Pending) -> Result<(), Error> {
    let Some(message) = pending else { return Ok(()) };
    match tokio::time::timeout(SEND_TIMEOUT, tx.send(message)).await {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Stalled),
    }
}

fn started(ctx: &Context, s: &Session) -> Result<Flow, Error> {
    with_task(ctx, s, |task, _| {
        if let Some(p) = task.peers.get_mut(&s.key.host_id)
            && matches!(p.state, PeerState::Pending | PeerState::Running | PeerState::BackToSource)
        {
            p.state = PeerState::Running;
        }
        Ok(Flow::Continue)
    })
}

fn back_to_source_started(ctx: &Context, s: &Session, description: &str) -> Result<Flow, Error> {
    // Only the scheduler sends a peer to the origin (origin protection, and
    // only such peers' digests become references).
    with_task(ctx, s, |task, _| {
        let state = task.peers.get(&s.key.host_id).map(|p| p.state);
        if state != Some(PeerState::BackToSource) {
            return Err(Error::OutOfOrder(format!(
                "download_peer_back_to_source_started without the scheduler's go-ahead (state {})",
                state.map_or("unknown", PeerState::name)
            )));
        }
        ctx.metrics.went_back_to_source();
        Ok(())
    })?;
    tracing::info!(task_id = %s.key.task_id, host_id = %s.key.host_id, description = short(description), "peer fetches from the origin");
    Ok(Flow::Continue)
}

async fn reschedule(ctx: &Context, s: &Session, tx: &ResponseTx, r: ReschedulePeerRequest) -> Result<Flow, Error> {
    let started = Instant::now();
    let bad: Vec<String> = r
        .bad_parent_peer_ids
        .into_iter()
        .filter(|id| !id.is_empty() && id.len() <= MAX_REF_LEN)
        .take(MAX_BLOCKLIST)
        .collect();
    let exhausted = with_task(ctx, s, |task, hosts| {
        let resolved: Vec<(String, String)> =
            bad.iter().filter_map(|b| task.resolve(b).map(|p| (p.id.clone(), p.host_id.clone()))).collect();
        let limits = &ctx.scheduling();
        let Some(child) = task.peers.get_mut(&s.key.host_id) else {
            return Ok(None);
        };
        for b in &bad {
            child.block(b);
        }
        for (peer_id, host_id) in &resolved {
            child.block(peer_id);
            child.block(host_id);
        }
        child.parents.retain(|h| !resolved.iter().any(|(_, bad_host)| bad_host == h));
        child.reschedules += 1;
        let n = child.reschedules;
        tracing::info!(
            task_id = %s.key.task_id, host_id = %s.key.host_id, reschedules = n, bad_parents = ?bad,
            description = short(&r.description), "peer asks to be rescheduled"
        );
        if n <= limits.max_reschedules {
            return Ok(None);
        }
        let answer = decide_exhausted(task, hosts, &s.key.host_id, limits, n)?;
        Ok(Some((answer.label(), answer_locked(ctx, task, hosts, s, &answer, tx))))
    })?;
    match exhausted {
        Some((label, pending)) => {
            ctx.metrics.decided(label, started.elapsed());
            deliver(tx, pending).await?;
        }
        None => schedule(ctx, s, tx, started, true).await?,
    }
    Ok(Flow::Continue)
}

/// The (peer ID, host ID) a peer names as its parent, unless it names itself or nothing known.
fn parent_of(task: &Task, reference: &str, child_host: &str) -> Option<(String, String)> {
    if reference.is_empty() || reference.len() > MAX_REF_LEN {
        return None;
    }
    task.resolve(reference).filter(|p| p.host_id != child_host).map(|p| (p.id.clone(), p.host_id.clone()))
}

fn piece_finished(ctx: &Context, s: &Session, r: DownloadPieceFinishedRequest) -> Result<Flow, Error> {
    let piece = r.piece.ok_or_else(|| Error::InvalidArgument("download_piece_finished.piece is required".into()))?;
    let digest = parse_piece_digest(piece.number, &piece.digest)?;
    let bytes = with_task(ctx, s, |task, hosts| {
        let recorded = task.record_peer_piece(&s.key.host_id, piece.number, &digest)?;
        if let Some(p) = task.peers.get_mut(&s.key.host_id) {
            // Progress: the reschedule budget is for stuck peers, not long downloads.
            p.reschedules = 0;
        }
        if recorded.new
            && let Some((_, parent_host)) = parent_of(task, &r.parent_peer_id, &s.key.host_id)
            && let Some(h) = hosts.get_mut(&parent_host)
        {
            h.uploads_ok += 1;
        }
        introduce_first_holder(ctx, task, hosts, &s.key.host_id);
        Ok(recorded.length)
    })?;
    ctx.metrics.piece(PieceSource::Peer, bytes);
    Ok(Flow::Continue)
}

fn origin_piece(ctx: &Context, s: &Session, r: DownloadPieceBackToSourceFinishedRequest) -> Result<Flow, Error> {
    let piece = OriginPiece::from_request(r)?;
    let outcome = with_task(ctx, s, |task, hosts| {
        let outcome = task.record_origin_piece(&s.key.host_id, &piece)?;
        if outcome == OriginOutcome::NewReference {
            push_digest(task, &s.key.host_id, piece.number, &piece.digest);
        }
        if !hosts.get(&s.key.host_id).is_some_and(Host::is_seed) {
            introduce_first_holder(ctx, task, hosts, &s.key.host_id);
        }
        Ok(outcome)
    })?;
    if let OriginOutcome::Conflict(reference) = outcome {
        ctx.metrics.rejected("origin_digest_conflict");
        tracing::warn!(
            task_id = %s.key.task_id, host_id = %s.key.host_id, piece = piece.number,
            %reference, reported = %piece.digest,
            "origin piece digest differs from the reference; keeping the reference and blocklisting the sender for the task"
        );
        return Err(Error::OriginConflict(piece.number));
    }
    ctx.metrics.piece(PieceSource::Origin, piece.length);
    Ok(Flow::Continue)
}

/// When the peer on `host` has just got its first piece, introduces it.
fn introduce_first_holder(ctx: &Context, task: &mut Task, hosts: &HashMap<String, Host>, host: &str) {
    if task.peers.get(host).is_some_and(|p| p.pieces.len() == 1) {
        introduce(ctx, task, hosts, host, Occasion::FirstPiece);
    }
}

/// Pushes the peer on `host` as a candidate parent to the peers
/// [`introductions`] picks for `occasion` (see `scheduling::introduce`), and
/// records the edges.
fn introduce(ctx: &Context, task: &mut Task, hosts: &HashMap<String, Host>, host: &str, occasion: Occasion) {
    let limits = ctx.scheduling();
    // Never past the load limit: a parent serving `load_limit` children is
    // introduced to nobody more.
    let serving = children_counts(task).get(host).copied().unwrap_or(0);
    let limit = limits.introduce_limit.min(limits.load_limit.saturating_sub(serving));
    if limit == 0 || task.distrusts(host) {
        return;
    }
    let Some(parent) = task.peers.get(host).and_then(|p| {
        let h = hosts.get(host)?;
        Some(CandidateParent {
            peer_id: p.id.clone(),
            host: Some(h.info.proto.clone()),
            pieces: p.pieces.iter().collect(),
            is_seed: false,
            grant: String::new(),
        })
    }) else {
        return;
    };
    for child in introductions(task, hosts, host, limit, occasion) {
        let grant = Grants::new(ctx.grants.as_ref(), &child).issue(&task.id, host);
        let message = AnnouncePeerResponse {
            response: Some(Response::NormalTask(NormalTaskResponse {
                candidate_parents: vec![CandidateParent { grant, ..parent.clone() }],
                content_length: task.content_length,
                piece_length: task.piece_length.unwrap_or_default(),
                piece_digests: HashMap::new(),
                concurrent_parent_limit: limits.concurrent_parent_limit,
            })),
        };
        let Some(peer) = task.peers.get_mut(&child) else { continue };
        if let Some(tx) = &peer.tx
            && tx.try_send(Ok(message)).is_ok()
        {
            peer.parents.push(host.to_string());
            tracing::debug!(task_id = %task.id, parent = host, child = %child, ?occasion, "introduced a parent");
        }
    }
}

/// Tells every other peer of the task with an open stream about a new
/// reference digest. A full or closed buffer is skipped: the peer gets all
/// digests again with its next answer.
fn push_digest(task: &Task, from_host: &str, number: u32, digest: &Digest) {
    let message = AnnouncePeerResponse {
        response: Some(Response::PieceDigests(PieceDigestsResponse {
            piece_digests: HashMap::from([(number, digest.to_string())]),
            content_length: task.content_length,
            piece_length: task.piece_length.unwrap_or(0),
        })),
    };
    for peer in task.peers.values().filter(|p| p.host_id != from_host) {
        if let Some(tx) = &peer.tx
            && tx.try_send(Ok(message.clone())).is_err()
        {
            tracing::debug!(task_id = %task.id, host_id = %peer.host_id, piece = number, "digest push skipped: buffer full or closed");
        }
    }
}

fn piece_failed(ctx: &Context, s: &Session, r: DownloadPieceFailedRequest) -> Result<Flow, Error> {
    ctx.metrics.piece_failed(r.digest_mismatch);
    with_task(ctx, s, |task, hosts| {
        let parent = parent_of(task, &r.parent_peer_id, &s.key.host_id);
        if let Some((_, parent_host)) = &parent
            && let Some(h) = hosts.get_mut(parent_host)
        {
            h.uploads_failed += 1;
        }
        if r.digest_mismatch
            && let Some(child) = task.peers.get_mut(&s.key.host_id)
        {
            if r.parent_peer_id.len() <= MAX_REF_LEN {
                child.block(&r.parent_peer_id);
            }
            if let Some((peer_id, host_id)) = &parent {
                child.block(peer_id);
                child.block(host_id);
            }
        }
        Ok(())
    })?;
    if r.digest_mismatch {
        tracing::warn!(
            task_id = %s.key.task_id, host_id = %s.key.host_id, parent = short(&r.parent_peer_id), piece = r.piece_number,
            "parent served a piece that does not match its digest; blocklisted for this peer"
        );
    }
    Ok(Flow::Continue)
}

/// A completed download; `origin` is `Some(content digest)` for an origin fetcher's completion.
fn finished(
    ctx: &Context,
    s: &Session,
    content_length: u64,
    pieces: u32,
    origin: Option<Option<Digest>>,
) -> Result<Flow, Error> {
    with_task(ctx, s, |task, hosts| {
        let state = task.peers.get(&s.key.host_id).map(|p| p.state);
        if origin.is_some() && state != Some(PeerState::BackToSource) {
            return Err(Error::OutOfOrder(format!(
                "download_peer_back_to_source_finished from a peer that is not fetching from the origin (state {})",
                state.map_or("unknown", PeerState::name)
            )));
        }
        task.record_finished(&s.key.host_id, content_length, pieces, origin.flatten().as_ref())?;
        if !hosts.get(&s.key.host_id).is_some_and(Host::is_seed) {
            introduce(ctx, task, hosts, &s.key.host_id, Occasion::Completed);
        }
        Ok(())
    })?;
    tracing::info!(task_id = %s.key.task_id, host_id = %s.key.host_id, content_length, pieces, "peer completed the task");
    Ok(Flow::End)
}

fn failed(ctx: &Context, s: &Session, description: &str, origin_status: Option<u32>) -> Result<Flow, Error> {
    with_task(ctx, s, |task, _| {
        if let Some(p) = task.peers.get_mut(&s.key.host_id) {
            p.state = PeerState::Failed;
            p.parents.clear();
        }
        Ok(())
    })?;
    tracing::info!(
        task_id = %s.key.task_id, host_id = %s.key.host_id, description = short(description), ?origin_status,
        "peer failed the task"
    );
    Ok(Flow::End)
}

/// At most [`MAX_LOGGED_TEXT`] bytes of `text`, cut at a character boundary.
fn short(text: &str) -> &str {
    if text.len() <= MAX_LOGGED_TEXT {
        return text;
    }
    let mut end = MAX_LOGGED_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
