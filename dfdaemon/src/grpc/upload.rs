//! `DfdaemonUpload` on TCP: live piece availability for children and
//! download triggers from the scheduler (seed peers).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use darter_common::task_id::TaskId;
use darter_proto::common::v1 as pb;
use darter_proto::dfdaemon::v1::{self as dpb, dfdaemon_upload_server::DfdaemonUpload};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{piece_to_proto, task_info};
use crate::error::Error;
use crate::task::TaskManager;

/// The upload control service.
#[derive(Debug, Clone)]
pub struct UploadService {
    tasks: Arc<TaskManager>,
}

impl UploadService {
    /// A service over `tasks`.
    pub fn new(tasks: Arc<TaskManager>) -> Self {
        Self { tasks }
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<dpb::SyncPiecesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DfdaemonUpload for UploadService {
    type SyncPiecesStream = SyncStream;

    async fn sync_pieces(&self, request: Request<dpb::SyncPiecesRequest>) -> Result<Response<SyncStream>, Status> {
        let id = TaskId::parse(&request.into_inner().task_id)
            .map_err(|e| Status::from(Error::InvalidArgument(e.to_string())))?;
        let task = self.tasks.storage().get(&id).ok_or_else(|| Status::from(Error::TaskNotFound(id.to_string())))?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut changes = task.subscribe();
            let removed = task.removed();
            let mut sent = BTreeSet::new();
            loop {
                changes.borrow_and_update();
                let fresh: Vec<pb::Piece> = task
                    .pieces()
                    .iter()
                    .filter(|p| sent.insert(p.number))
                    .map(|p| piece_to_proto(p, pb::PieceSource::Local))
                    .collect();
                let complete = task.is_complete();
                if !fresh.is_empty() || complete {
                    let msg = dpb::SyncPiecesResponse {
                        pieces: fresh,
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
        _request: Request<dpb::TriggerDownloadTaskRequest>,
    ) -> Result<Response<()>, Status> {
        // Triggers make a daemon fetch any URL for whoever asks; they are for
        // seed peers driven by an authenticated scheduler, which come later.
        Err(Status::failed_precondition("this dfdaemon is not a seed peer; download triggers are refused"))
    }

    async fn stat_task(&self, request: Request<dpb::StatTaskRequest>) -> Result<Response<dpb::TaskInfo>, Status> {
        let id = TaskId::parse(&request.into_inner().task_id)
            .map_err(|e| Status::from(Error::InvalidArgument(e.to_string())))?;
        let task = self.tasks.storage().get(&id).ok_or_else(|| Status::from(Error::TaskNotFound(id.to_string())))?;
        Ok(Response::new(task_info(&task, true)))
    }
}
