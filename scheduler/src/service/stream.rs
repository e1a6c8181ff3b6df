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
    let mut session: Option<Session> = None;
    // IDs the peer claimed before it registered, for the log of a refusal.
    let mut claimed = (String::new(), String::new());
    let outcome = loop {
        let evicted = session.as_ref().map(|s| s.evicted.clone());
        let next = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Err(Error::ShuttingDown),
            _ = async {
                match &evicted {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            } => break Err(evicted_reason(&ctx, session.as_ref())),
            m = inbound.message() => m,
        };
        match next {
            Ok(Some(message)) => {
                if session.is_none() {
                    let cut = |s: &str| s.chars().take(128).collect::<String>();
                    claimed = (cut(&message.task_id), cut(&message.host_id));
                }
                match handle(&ctx, caller.as_ref(), &mut session, message, &tx).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::End) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
            Ok(None) => break Ok(()),
            // Bytes that are not a request (undecodable, too large): say so.
            Err(status) if matches!(status.code(), Code::Internal | Code::OutOfRange | Code::InvalidArgument) => {
                break Err(Error::InvalidArgument(format!("unreadable request: {}", status.message())));
            }
            Err(status) => {
                // The peer went away: nobody is left to read a status.
                tracing::debug!(error = %status, "announce stream broke");
                break Ok(());
            }
        }
    };
    if let Err(e) = outcome {
        report(&ctx, session.as_ref(), &claimed, &e);
        let _ = tokio::time::timeout(FINAL_STATUS_TIMEOUT, tx.send(Err(e.into()))).await;
    }
    if let Some(s) = session {
        settle(&ctx, &s);
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
