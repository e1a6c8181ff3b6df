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
use crate::task::{DownloadSpec, TaskManager};

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
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn trigger_download_task(
        &self,
        request: Request<dpb::TriggerDownloadTaskRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let mut download =
            req.download.ok_or_else(|| Status::from(Error::InvalidArgument("download is required".into())))?;
        download.output_path.clear();
        let spec = DownloadSpec::try_from(download)?;
        if !req.task_id.is_empty() && req.task_id != spec.task_id.as_str() {
            return Err(Error::InvalidArgument(format!(
                "task id {} does not match the download's {}",
                req.task_id, spec.task_id
            ))
            .into());
        }
        let mut sub = self.tasks.download(spec)?;
        tokio::spawn(async move {
            while sub.status.borrow_and_update().outcome.is_none() && sub.status.changed().await.is_ok() {}
        });
        Ok(Response::new(()))
    }

    async fn stat_task(&self, request: Request<dpb::StatTaskRequest>) -> Result<Response<dpb::TaskInfo>, Status> {
        let id = TaskId::parse(&request.into_inner().task_id)
            .map_err(|e| Status::from(Error::InvalidArgument(e.to_string())))?;
        let task = self.tasks.storage().get(&id).ok_or_else(|| Status::from(Error::TaskNotFound(id.to_string())))?;
        Ok(Response::new(task_info(&task, true)))
    }
}
