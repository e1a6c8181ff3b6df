//! One task per announce stream: reads requests until the peer finishes,
//! fails, goes away, misbehaves, is evicted, or the scheduler stops; then
//! sends the final status and settles the peer's fate in the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use darter_proto::scheduler::v1::AnnouncePeerRequest;
use tonic::{Code, Streaming};

use super::Context;
use super::announce::{Flow, Session, handle};
use crate::error::Error;
use crate::resource::{PeerState, ResponseTx};

/// How long the final status may wait for room in a full response buffer.
const FINAL_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Drives one announce stream to its end.
pub(super) async fn run(
    ctx: Arc<Context>,
    caller: Option<darter_common::tls::Identity>,
    mut inbound: Streaming<AnnouncePeerRequest>,
    tx: ResponseTx,
) {
    let mut stream = StreamState::default();
    let outcome = loop {
        let evicted = stream.session.as_ref().map(|s| s.evicted.clone());
        let next = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Err(Error::ShuttingDown),
            _ = async {
                match &evicted {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            } => break Err(stream.evicted(&ctx)),
            m = inbound.message() => m,
        };
        match next {
            Ok(Some(message)) => {
                if let Some(end) = stream.receive(&ctx, caller.as_ref(), message, &tx).await {
                    break end;
                }
            }
            Ok(None) => break Ok(()),
            Err(status) => {
                if let Some(end) = unreadable(&status) {
                    break end;
                }
                // The peer went away: nobody is left to read a status.
                tracing::debug!(error = %status, "announce stream broke");
                break Ok(());
            }
        }
    };
    stream.close(&ctx, outcome, &tx).await;
}

/// What an error reading the next message means: `Some` when the bytes were
/// not a request (undecodable, too large), which the stream answers; `None`
/// when the peer went away.
pub(super) fn unreadable(status: &tonic::Status) -> Option<Result<(), Error>> {
    matches!(status.code(), Code::Internal | Code::OutOfRange | Code::InvalidArgument)
        .then(|| Err(Error::InvalidArgument(format!("unreadable request: {}", status.message()))))
}

/// An announce stream between messages: its registration, if any, and the
/// IDs the peer claimed before it registered (for the log of a refusal).
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The registration, once `register` was accepted.
    pub session: Option<Session>,
    claimed: (String, String),
}

impl StreamState {
    /// Handles one message; `Some(outcome)` when the stream ends with it.
    pub async fn receive(
        &mut self,
        ctx: &Context,
        caller: Option<&darter_common::tls::Identity>,
        message: AnnouncePeerRequest,
        tx: &ResponseTx,
    ) -> Option<Result<(), Error>> {
        if self.session.is_none() {
            let cut = |s: &str| s.chars().take(128).collect::<String>();
            self.claimed = (cut(&message.task_id), cut(&message.host_id));
        }
        match handle(ctx, caller, &mut self.session, message, tx).await {
            Ok(Flow::Continue) => None,
            Ok(Flow::End) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        }
    }

    /// Why the registered peer was removed (the stream ends with it).
    pub fn evicted(&self, ctx: &Context) -> Error {
        evicted_reason(ctx, self.session.as_ref())
    }

    /// Ends the stream: a refusal is logged and sent as its final status,
    /// and the peer's fate is settled in the model.
    pub async fn close(self, ctx: &Context, outcome: Result<(), Error>, tx: &ResponseTx) {
        if let Err(e) = outcome {
            report(ctx, self.session.as_ref(), &self.claimed, &e);
            let _ = tokio::time::timeout(FINAL_STATUS_TIMEOUT, tx.send(Err(e.into()))).await;
        }
        if let Some(s) = self.session {
            settle(ctx, &s);
        }
    }
}

fn evicted_reason(ctx: &Context, session: Option<&Session>) -> Error {
    match session {
        Some(s) => ctx.resources.lock().eviction_reason(&s.key),
        None => Error::Evicted("peer was removed".into()),
    }
}

fn report(ctx: &Context, session: Option<&Session>, claimed: &(String, String), e: &Error) {
    // Before register the IDs are the peer's unchecked words: logged escaped.
    let (task_id, host_id) = match session {
        Some(s) => (s.key.task_id.to_string(), s.key.host_id.clone()),
        None => (format!("{:?}", claimed.0), format!("{:?}", claimed.1)),
    };
    match e {
        Error::ShuttingDown => tracing::debug!(%task_id, %host_id, "announce stream closed: shutting down"),
        Error::Evicted(_) => tracing::info!(%task_id, %host_id, reason = %e, "announce stream closed"),
        // Normal after a scheduler restart, until the host announces again.
        Error::UnknownHost(_) => {
            ctx.metrics.rejected(e.reason().as_str());
            tracing::info!(%task_id, %host_id, error = %e, "announce stream refused");
        }
        _ => {
            ctx.metrics.rejected(e.reason().as_str());
            tracing::warn!(%task_id, %host_id, reason = e.reason().as_str(), error = %e, "announce stream refused");
        }
    }
}

/// After the stream: a peer that completed stays a parent; a failed one stays
/// visible to `StatPeer` but is never handed out; any other is removed.
fn settle(ctx: &Context, s: &Session) {
    let now = Instant::now();
    let mut state = ctx.resources.lock();
    let Some(task) = state.tasks.get_mut(&s.key.task_id) else { return };
    let Some(peer) = task.peers.get_mut(&s.key.host_id) else { return };
    if peer.generation != s.key.generation {
        return;
    }
    match peer.state {
        PeerState::Succeeded | PeerState::Failed => peer.tx = None,
        _ => {
            tracing::debug!(task_id = %s.key.task_id, host_id = %s.key.host_id, state = peer.state.name(), "peer left before completing");
            if let Some(mut p) = task.peers.remove(&s.key.host_id) {
                p.evict();
            }
        }
    }
    task.updated_at = now;
}
