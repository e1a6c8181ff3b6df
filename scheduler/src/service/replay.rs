//! Fuzz entry point (`fuzz/fuzz_targets/scheduler_stream.rs`; the server
//! never calls it): replays a sequence of calls and announce-stream messages
//! against a [`Context`] in process, without gRPC, through the same handlers
//! the server runs. Every message goes through [`StreamState`], the state
//! machine [`super::stream::run`] drives; unary calls go through
//! [`SchedulerService`]. The context should be plaintext (no caller is
//! authenticated) and have no seed peers, so nothing leaves the process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use darter_proto::scheduler::v1::{self as spb, AnnouncePeerRequest, scheduler_server::Scheduler as _};
use tokio::sync::mpsc;
use tonic::{Request, Status};

use super::stream::{StreamState, unreadable};
use super::{Context, RESPONSE_BUFFER, SchedulerService};
use crate::resource::ResponseTx;

/// Announce streams a replay keeps open at once ([`Step::Message`]'s
/// `stream` is taken modulo this).
pub const REPLAY_STREAMS: usize = 4;

/// One step of a [`replay`].
#[derive(Debug, Clone)]
pub enum Step {
    /// An `AnnounceHost` call.
    AnnounceHost(spb::AnnounceHostRequest),
    /// A `LeaveHost` call.
    LeaveHost(spb::LeaveHostRequest),
    /// A `LeavePeer` call.
    LeavePeer(spb::LeavePeerRequest),
    /// A `StatPeer` call.
    StatPeer(spb::StatPeerRequest),
    /// A `StatTask` call.
    StatTask(spb::StatTaskRequest),
    /// The next message on announce stream `stream` (opened by its first
    /// message), or the error reading it gave (an undecodable message is
    /// `Code::Internal`, as tonic reports it).
    Message {
        /// Which stream.
        stream: usize,
        /// The message.
        message: Result<AnnouncePeerRequest, Status>,
    },
    /// The peer closes announce stream `stream`.
    Close {
        /// Which stream.
        stream: usize,
    },
    /// A garbage collection that many seconds from now.
    Collect {
        /// Seconds past now.
        after_secs: u64,
    },
}

/// What a [`replay`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Answers the streams received (responses and final statuses).
    pub answers: usize,
    /// Unary calls that returned an error.
    pub refused_calls: usize,
}

/// An open stream: its state, its response buffer, and the peer's end of it.
struct Open {
    state: StreamState,
    tx: ResponseTx,
    rx: mpsc::Receiver<Result<spb::AnnouncePeerResponse, Status>>,
}

/// Runs `steps` against `ctx`, then closes the streams left open (the peers
/// go away), as the server would. Answers are read after each step, so no
/// buffer fills.
pub async fn replay(ctx: &Arc<Context>, steps: impl IntoIterator<Item = Step>) -> Replayed {
    let service = SchedulerService::new(ctx.clone());
    let mut streams: Vec<Option<Open>> = (0..REPLAY_STREAMS).map(|_| None).collect();
    let mut seen = Replayed::default();
    for step in steps {
        let refused = match step {
            Step::AnnounceHost(r) => service.announce_host(Request::new(r)).await.is_err(),
            Step::LeaveHost(r) => service.leave_host(Request::new(r)).await.is_err(),
            Step::LeavePeer(r) => service.leave_peer(Request::new(r)).await.is_err(),
            Step::StatPeer(r) => service.stat_peer(Request::new(r)).await.is_err(),
            Step::StatTask(r) => service.stat_task(Request::new(r)).await.is_err(),
            Step::Message { stream, message } => {
                let slot = &mut streams[stream % REPLAY_STREAMS];
                let open = slot.get_or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
                    Open { state: StreamState::default(), tx, rx }
                });
                let end = match message {
                    Ok(message) => open.state.receive(ctx, None, message, &open.tx).await,
                    Err(status) => Some(unreadable(&status).unwrap_or(Ok(()))),
                };
                if let Some(outcome) = end
                    && let Some(open) = slot.take()
                {
                    seen.answers += close(ctx, open, outcome).await;
                }
                false
            }
            Step::Close { stream } => {
                if let Some(open) = streams[stream % REPLAY_STREAMS].take() {
                    seen.answers += close(ctx, open, Ok(())).await;
                }
                false
            }
            Step::Collect { after_secs } => {
                if let Some(now) = Instant::now().checked_add(Duration::from_secs(after_secs)) {
                    crate::gc::collect(&mut ctx.resources.lock(), now, &ctx.config.gc);
                }
                false
            }
        };
        seen.refused_calls += usize::from(refused);
        // Streams whose peer was removed end, as `run` ends them.
        for slot in &mut streams {
            let evicted =
                slot.as_ref().and_then(|o| o.state.session.as_ref()).is_some_and(|s| s.evicted.is_cancelled());
            if evicted && let Some(open) = slot.take() {
                let reason = open.state.evicted(ctx);
                seen.answers += close(ctx, open, Err(reason)).await;
            }
        }
        for open in streams.iter_mut().flatten() {
            while open.rx.try_recv().is_ok() {
                seen.answers += 1;
            }
        }
    }
    for open in streams.into_iter().flatten() {
        seen.answers += close(ctx, open, Ok(())).await;
    }
    seen
}

/// Closes a stream with `outcome`; the answers it still had.
async fn close(ctx: &Context, open: Open, outcome: Result<(), crate::error::Error>) -> usize {
    let Open { state, tx, mut rx } = open;
    let mut answers = 0;
    while rx.try_recv().is_ok() {
        answers += 1;
    }
    state.close(ctx, outcome, &tx).await;
    drop(tx);
    while rx.try_recv().is_ok() {
        answers += 1;
    }
    answers
}

#[cfg(test)]
mod tests {
    use darter_common::task_id::TaskId;
    use darter_proto::common::v1 as pb;
    use darter_proto::scheduler::v1::announce_peer_request::Request as Message;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;

    fn context() -> Arc<Context> {
        let metrics = crate::metrics::Metrics::new();
        Arc::new(Context::new(crate::Config::default(), metrics, CancellationToken::new(), TaskTracker::new()))
    }

    fn announce(id: &str) -> Step {
        let host = pb::Host {
            id: id.into(),
            hostname: id.into(),
            ip: "10.0.0.1".into(),
            port: 4000,
            download_port: 4003,
            ..Default::default()
        };
        Step::AnnounceHost(spb::AnnounceHostRequest { host: Some(host), interval_ms: 30_000 })
    }

    fn register(stream: usize, host: &str) -> Step {
        let url = "http://origin.example/f";
        let message = AnnouncePeerRequest {
            host_id: host.into(),
            task_id: TaskId::for_download(url, None, "", "").unwrap().to_string(),
            peer_id: format!("peer-{host}"),
            request: Some(Message::Register(spb::RegisterPeerRequest {
                download: Some(pb::Download { url: url.into(), ..Default::default() }),
                present_pieces: vec![],
            })),
        };
        Step::Message { stream, message: Ok(message) }
    }

    #[tokio::test]
    async fn messages_reach_the_handlers_and_every_stream_ends() {
        let ctx = context();
        let seen = replay(&ctx, [announce("h"), register(0, "h")]).await;
        assert_eq!(seen, Replayed { answers: 1, refused_calls: 0 }, "the register is answered");
        assert_eq!(ctx.resources.lock().tasks.len(), 1);
        assert!(ctx.streams.is_empty(), "the stream left open at the end was closed");

        // Undecodable bytes end their stream with a status; an unknown host is refused.
        let unreadable = Step::Message { stream: 1, message: Err(Status::internal("failed to decode")) };
        let seen = replay(&context(), [register(0, "nobody"), unreadable]).await;
        assert_eq!(seen, Replayed { answers: 2, refused_calls: 0 }, "two final statuses");
        let seen = replay(&context(), [Step::LeaveHost(spb::LeaveHostRequest::default())]).await;
        assert_eq!(seen.refused_calls, 1, "an empty host ID is refused");
    }
}
