//! A download the scheduler plans (its session with the scheduler): register
//! with the scheduler that owns the task, then fetch from parents or from the
//! origin as it says, reporting every piece. When the scheduler cannot be reached the download goes to the
//! origin directly, unless back-to-source is disabled for it: then it fails
//! with a clear error, never a silent origin fetch.

use std::sync::Arc;
use std::time::Duration;

use darter_common::digest::Digest;
use darter_common::piece::piece_count;
use darter_proto::common::v1 as pb;
use darter_proto::scheduler::v1 as spb;
use darter_proto::scheduler::v1::announce_peer_request::Request as Req;
use darter_proto::scheduler::v1::announce_peer_response::Response as Resp;
use tonic::Code;

use super::Downloads;
use super::announcer::Announcer;
use super::back_to_source::BackToSource;
use super::p2p::{P2p, P2pEnd, is_transport_failure};
use super::progress::Progress;
use super::spec::DownloadSpec;
use crate::config::P2pConfig;
use crate::error::{Error, Result};
use crate::piece_client::PieceClient;
use crate::scheduler_client::SchedulerClient;
use crate::storage::Lease;

/// What a daemon with schedulers has: the scheduled side of its downloads.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// The schedulers.
    pub scheduler: Arc<SchedulerClient>,
    /// Peer-to-peer limits.
    pub config: P2pConfig,
    /// Client for parents' piece servers (a connection pool).
    pub pieces: Arc<PieceClient>,
    /// This daemon is a seed peer.
    pub seed: bool,
}

impl Scheduled {
    /// A swarm client with a pooled client for piece transfers, which dials
    /// encrypted parents with `piece_tls` (see `piece_wire::client_config`).
    pub fn new(
        scheduler: Arc<SchedulerClient>,
        config: P2pConfig,
        seed: bool,
        piece_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self> {
        let pieces = Arc::new(PieceClient::new(config.per_parent * 2, PIECE_CONNECT_TIMEOUT).with_tls(piece_tls));
        Ok(Self { scheduler, config, pieces, seed })
    }
}

/// Why a registration did not go through.
pub(super) enum Refusal {
    /// No scheduler answered (transport failure or timeout): the origin may be used.
    Unreachable(String),
    /// The scheduler answered no: the download fails.
    Refused(String),
}

/// How long connecting to a parent's piece server may take.
const PIECE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the scheduler may take to answer a registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a swarm download's bytes came from, with the stream to report the end on.
pub(super) struct ScheduledFetch {
    pub result: Result<(Lease, bool)>,
    pub announcer: Option<Announcer>,
}

fn to_proto(spec: &DownloadSpec) -> pb::Download {
    pb::Download {
        url: spec.url.to_string(),
        digest: spec.digest.map(|d| d.to_string()),
        tag: spec.tag.clone(),
        application: spec.application.clone(),
        request_headers: spec.headers.iter().cloned().collect(),
        output_path: String::new(),
        timeout_ms: 0,
        disable_back_to_source: spec.disable_back_to_source,
        piece_length: spec.piece_length.unwrap_or(0),
    }
}

impl Downloads {
    /// Registers with the owning scheduler and returns its first answer;
    /// re-announces the host once if the scheduler does not know it (e.g. it
    /// restarted).
    async fn register(
        &self,
        scheduled: &Scheduled,
        spec: &DownloadSpec,
    ) -> std::result::Result<(Announcer, Resp), Refusal> {
        let present: Vec<u32> =
            self.storage.get(&spec.task_id).map(|t| t.pieces().iter().map(|p| p.number).collect()).unwrap_or_default();
        let Some((addr, client)) = scheduled.scheduler.for_task(&spec.task_id) else {
            return Err(Refusal::Unreachable("no scheduler is known (the manager has not named one yet)".into()));
        };
        let addr = addr.as_str();
        for attempt in 0..2 {
            let host_id = &scheduled.scheduler.host().id;
            let opened = async {
                let mut a =
                    Announcer::open(client.clone(), host_id, &spec.task_id, to_proto(spec), present.clone()).await?;
                match a.next().await {
                    Some(Ok(first)) => Ok((a, first)),
                    Some(Err(status)) => Err(status),
                    None => Err(tonic::Status::unavailable("the scheduler closed the stream")),
                }
            };
            match tokio::time::timeout(REGISTER_TIMEOUT, opened).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(status)) if attempt == 0 && status.code() == Code::FailedPrecondition => {
                    tracing::info!(scheduler = addr, error = %status.message(), "announcing the host again");
                    scheduled.scheduler.announce_host().await;
                }
                Ok(Err(status)) if is_transport_failure(&status) => {
                    return Err(Refusal::Unreachable(format!("scheduler {addr}: {}", status.message())));
                }
                Ok(Err(status)) => return Err(Refusal::Refused(format!("scheduler {addr}: {}", status.message()))),
                Err(_) => {
                    return Err(Refusal::Unreachable(format!(
                        "scheduler {addr} did not answer within {REGISTER_TIMEOUT:?}"
                    )));
                }
            }
        }
        Err(Refusal::Refused(format!("scheduler {addr} does not accept this host")))
    }

    /// Fetches a task in the swarm. `bool` in the result: the origin was used.
    pub(super) async fn fetch_scheduled(
        &self,
        scheduled: &Scheduled,
        fetcher: &BackToSource,
        spec: &DownloadSpec,
        progress: &Progress,
    ) -> ScheduledFetch {
        let (mut announcer, first) = match self.register(scheduled, spec).await {
            Ok(answer) => answer,
            Err(Refusal::Refused(why)) => {
                return ScheduledFetch { result: Err(Error::SchedulerRefused(why)), announcer: None };
            }
            Err(Refusal::Unreachable(why)) => {
                tracing::warn!(task_id = %spec.task_id, error = %why, "no scheduler; going to the origin directly");
                let result = if spec.disable_back_to_source {
                    Err(Error::SchedulerUnavailable(why))
                } else {
                    fetcher.fetch(spec, progress).await.map(|l| (l, true))
                };
                return ScheduledFetch { result, announcer: None };
            }
        };
        let reason = match first {
            Resp::NormalTask(n) => {
                let p2p = P2p {
                    storage: &self.storage,
                    config: &scheduled.config,
                    pieces: &scheduled.pieces,
                    host_id: &scheduled.scheduler.host().id,
                    scheduler: &scheduled.scheduler,
                    spec,
                    progress,
                    metrics: &self.metrics,
                };
                match p2p.run(&mut announcer, n).await {
                    Ok(P2pEnd::Complete(lease)) => {
                        return ScheduledFetch { result: Ok((lease, false)), announcer: Some(announcer) };
                    }
                    Ok(P2pEnd::BackToSource(why)) => why,
                    Err(e) => return ScheduledFetch { result: Err(e), announcer: Some(announcer) },
                }
            }
            Resp::NeedBackToSource(n) => n.description,
            Resp::EmptyTask(_) => "the task is empty".to_string(),
            Resp::PieceDigests(_) => "the scheduler answered out of order".to_string(),
        };
        if spec.disable_back_to_source {
            return ScheduledFetch { result: Err(Error::BackToSourceDisabled), announcer: Some(announcer) };
        }
        tracing::info!(task_id = %spec.task_id, why = %reason, "fetching from the origin");
        let reporter = announcer.reporter.clone();
        reporter.send(Req::DownloadPeerBackToSourceStarted(spb::DownloadPeerBackToSourceStartedRequest {
            description: reason,
        }));
        let origin = BackToSource { reporter: Some(reporter), ..fetcher.clone() };
        let result = origin.fetch(spec, progress).await.map(|l| (l, true));
        ScheduledFetch { result, announcer: Some(announcer) }
    }
}

/// Tells the scheduler how the download ended, then closes the stream.
pub(super) async fn report_end(
    announcer: Announcer,
    outcome: std::result::Result<(&Lease, bool, Option<Digest>), &Error>,
) {
    let reporter = &announcer.reporter;
    match outcome {
        Ok((lease, from_origin, digest)) => {
            let len = lease.content_length().unwrap_or(0);
            let count = piece_count(len, lease.piece_length());
            if from_origin {
                reporter.send(Req::DownloadPeerBackToSourceFinished(spb::DownloadPeerBackToSourceFinishedRequest {
                    content_length: len,
                    piece_count: count,
                    digest: digest.map(|d| d.to_string()).unwrap_or_default(),
                }));
            } else {
                reporter.send(Req::DownloadPeerFinished(spb::DownloadPeerFinishedRequest {
                    content_length: len,
                    piece_count: count,
                }));
            }
        }
        Err(e) => reporter.send(Req::DownloadPeerFailed(spb::DownloadPeerFailedRequest { description: e.to_string() })),
    }
    announcer.finish().await;
}

impl Downloads {
    /// A seed asked for a task it already holds tells the scheduler, so the
    /// swarm can use it (after a scheduler restart, or a GC of the task's
    /// peers there): the stored pieces are reported as the origin pieces they
    /// were, or the seed reports a finished download when another peer leads.
    pub(super) async fn announce_complete(&self, scheduled: &Scheduled, spec: &DownloadSpec, lease: &Lease) {
        let Ok((announcer, first)) = self.register(scheduled, spec).await else { return };
        let len = lease.content_length().unwrap_or(0);
        let from_origin = matches!(first, Resp::NeedBackToSource(_));
        if from_origin {
            for p in lease.pieces() {
                let piece = super::back_to_source::NewPiece {
                    number: p.number,
                    offset: p.offset,
                    length: p.length,
                    digest: p.digest,
                };
                announcer.reporter.origin_piece(&piece, Some(len), lease.piece_length());
            }
        }
        let digest = lease.record().digest.and_then(|d| d.parse().ok());
        report_end(announcer, Ok((lease, from_origin, digest))).await;
    }
}
