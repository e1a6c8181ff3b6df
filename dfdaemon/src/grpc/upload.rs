//! `DfdaemonUpload` on TCP: live piece availability for children and
//! download triggers from the scheduler (seed peers).

use std::pin::Pin;
use std::sync::Arc;

use darter_common::task_id::TaskId;
use darter_common::tls::{Role, authz};
use darter_proto::dfdaemon::v1::{self as dpb, dfdaemon_upload_server::DfdaemonUpload};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::task_info;
use crate::download::{DownloadSpec, Downloads};
use crate::error::Error;

/// The upload control service.
#[derive(Debug, Clone)]
pub struct UploadService {
    tasks: Arc<Downloads>,
    seed: bool,
    cluster_id: Option<u64>,
}

/// Who may follow a task's pieces and ask about it: the cluster's members.
const MEMBERS: &[Role] = &[Role::Peer, Role::SeedPeer, Role::Scheduler];

impl UploadService {
    /// A service over `tasks`; `seed` accepts download triggers. With mutual
    /// TLS (`cluster_id` is this member's cluster), callers must be of that
    /// cluster: its schedulers trigger, its members follow pieces.
    pub fn new(tasks: Arc<Downloads>, seed: bool, cluster_id: Option<u64>) -> Self {
        Self { tasks, seed, cluster_id }
    }

    /// The task, waiting a little for it to appear: a seed that was just
    /// triggered creates it once its origin answers, and children may ask
    /// before that.
    async fn wait_for_task(&self, id: &TaskId) -> Option<Arc<crate::storage::TaskEntry>> {
        let deadline = tokio::time::Instant::now() + TASK_APPEAR_TIMEOUT;
        loop {
            if let Some(t) = self.tasks.storage().get(id) {
                return Some(t);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// How long `SyncPieces` waits for a task this daemon does not hold yet
/// (longer than an origin's connect timeout, so a slow origin is not taken for a dead seed).
const TASK_APPEAR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type SyncStream = Pin<Box<dyn Stream<Item = Result<dpb::SyncPiecesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DfdaemonUpload for UploadService {
    type SyncPiecesStream = SyncStream;

    async fn sync_pieces(&self, request: Request<dpb::SyncPiecesRequest>) -> Result<Response<SyncStream>, Status> {
        authz::require(&request, MEMBERS, self.cluster_id)?;
        let id = TaskId::parse(&request.into_inner().task_id)
            .map_err(|e| Status::from(Error::InvalidArgument(e.to_string())))?;
        let task = self.wait_for_task(&id).await.ok_or_else(|| Status::from(Error::TaskNotFound(id.to_string())))?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut changes = task.subscribe();
            let removed = task.removed();
            let mut cursor = 0;
            loop {
                changes.borrow_and_update();
                // Only what was verified since the last message: a follower
                // costs O(new pieces) per change, not O(all pieces).
                let (fresh, next) = task.pieces_since(cursor);
                cursor = next;
                // Numbers only: the child takes digests from the scheduler.
                let numbers: Vec<u32> = fresh.iter().map(|p| p.number).collect();
                let complete = task.is_complete();
                if !numbers.is_empty() || complete {
                    let msg = dpb::SyncPiecesResponse {
                        pieces: Vec::new(),
                        numbers,
                        content_length: task.content_length(),
                        piece_length: task.piece_length(),
                        complete,
                    };
                    if tx.send(Ok(msg)).await.is_err() || complete {
                        return;
                    }
                }
                // Stop when the peer leaves or the task leaves storage, not only
                // on the next piece: a stalled task must not pin this stream.
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = removed.cancelled() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn trigger_download_task(
        &self,
        request: Request<dpb::TriggerDownloadTaskRequest>,
    ) -> Result<Response<()>, Status> {
        // Triggers make a daemon fetch a URL with the caller's headers: only
        // seed peers take them, and only from their own cluster's schedulers.
        authz::require(&request, &[Role::Scheduler], self.cluster_id)?;
        if !self.seed {
            return Err(Error::NotSeedPeer.into());
        }
        let req = request.into_inner();
        let mut download =
            req.download.ok_or_else(|| Status::from(Error::InvalidArgument("download is required".into())))?;
        download.output_path.clear();
        download.disable_back_to_source = false;
        let spec = DownloadSpec::from_proto(download, self.tasks.limits())?;
        if req.task_id != spec.task_id.as_str() {
            return Err(Error::InvalidArgument(format!(
                "task id {} does not match the download's {}",
                req.task_id, spec.task_id
            ))
            .into());
        }
        tracing::info!(task_id = %spec.task_id, "download triggered by the scheduler");
        let mut sub = self.tasks.download(spec)?;
        // Hold the subscription until the download ends, so it is not abandoned.
        tokio::spawn(async move {
            while sub.status.borrow_and_update().outcome.is_none() && sub.status.changed().await.is_ok() {}
        });
        Ok(Response::new(()))
    }

    async fn stat_task(&self, request: Request<dpb::StatTaskRequest>) -> Result<Response<dpb::TaskInfo>, Status> {
        authz::require(&request, MEMBERS, self.cluster_id)?;
        let id = TaskId::parse(&request.into_inner().task_id)
            .map_err(|e| Status::from(Error::InvalidArgument(e.to_string())))?;
        let task = self.tasks.storage().get(&id).ok_or_else(|| Status::from(Error::TaskNotFound(id.to_string())))?;
        Ok(Response::new(task_info(&task, true)))
    }
}
