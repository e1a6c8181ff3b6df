//! `DfdaemonDownload` on the unix socket: dfget's API.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use darter_common::task_id::TaskId;
use darter_proto::common::v1 as pb;
use darter_proto::dfdaemon::v1::{
    self as dpb, dfdaemon_download_server::DfdaemonDownload, download_task_response::Response,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response as TonicResponse, Status};

use super::task_info;
use crate::download::{Caller, DownloadSpec, Downloads, Finished, Status as JobStatus, Subscription, place_output};
use crate::error::Error;

/// The download service.
#[derive(Debug, Clone)]
pub struct DownloadService {
    tasks: Arc<Downloads>,
    default_timeout: Duration,
    access: crate::socket_access::SocketAccess,
}

impl DownloadService {
    /// A service over `tasks`.
    pub fn new(tasks: Arc<Downloads>, default_timeout: Duration, access: crate::socket_access::SocketAccess) -> Self {
        Self { tasks, default_timeout, access }
    }
}

fn parse_task_id(s: &str) -> Result<TaskId, Status> {
    TaskId::parse(s).map_err(|e| Error::InvalidArgument(e.to_string()).into())
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<dpb::DownloadTaskResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DfdaemonDownload for DownloadService {
    type DownloadTaskStream = ResponseStream;

    async fn download_task(
        &self,
        request: Request<dpb::DownloadTaskRequest>,
    ) -> Result<TonicResponse<Self::DownloadTaskStream>, Status> {
        self.access.check(&request)?;
        let caller = request
            .extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .map(|cred| Caller { uid: cred.uid(), gid: cred.gid() });
        let download = request
            .into_inner()
            .download
            .ok_or_else(|| Status::from(Error::InvalidArgument("download is required".into())))?;
        let spec = DownloadSpec::from_proto(download, self.tasks.limits())?;
        let timeout = spec.timeout.unwrap_or(self.default_timeout);
        tracing::info!(task_id = %spec.task_id, url = %crate::backend::redacted(&spec.url), "download requested");
        let output = spec.output.clone();
        let task_id = spec.task_id.clone();
        let sub = self.tasks.download(spec)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, follow(sub, &tx, &task_id)).await {
                Err(_) => Err(Error::Timeout(timeout)),
                Ok(r) => r,
            };
            let last = match result {
                Ok(finished) => finish(finished, output, caller, &task_id).await,
                Err(e) => Err(e),
            };
            let _ = tx.send(last.map_err(Status::from)).await;
        });
        Ok(TonicResponse::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn stat_task(&self, request: Request<dpb::StatTaskRequest>) -> Result<TonicResponse<dpb::TaskInfo>, Status> {
        self.access.check(&request)?;
        let id = parse_task_id(&request.into_inner().task_id)?;
        let task = self.tasks.storage().get(&id).ok_or_else(|| Status::from(Error::TaskNotFound(id.to_string())))?;
        Ok(TonicResponse::new(task_info(&task, true)))
    }

    async fn delete_task(&self, request: Request<dpb::DeleteTaskRequest>) -> Result<TonicResponse<()>, Status> {
        self.access.check(&request)?;
        let id = parse_task_id(&request.into_inner().task_id)?;
        let storage = self.tasks.storage().clone();
        let shown = id.to_string();
        // A panic in the blocking removal is a storage failure like any other.
        tokio::task::spawn_blocking(move || storage.remove(&id, false))
            .await
            .map_err(|e| Error::Storage(format!("removing task {shown}: {e}")))??;
        Ok(TonicResponse::new(()))
    }

    async fn list_tasks(&self, request: Request<()>) -> Result<TonicResponse<dpb::ListTasksResponse>, Status> {
        self.access.check(&request)?;
        let tasks = self.tasks.storage().list().iter().map(|t| task_info(t, false)).collect();
        Ok(TonicResponse::new(dpb::ListTasksResponse { tasks }))
    }
}

type Tx = mpsc::Sender<Result<dpb::DownloadTaskResponse, Status>>;

/// Shortest time between two progress messages to a client: a progress bar
/// needs a few updates a second, not one per piece (thousands per GiB, each
/// a wake-up on both sides of the socket).
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Forwards progress until the job ends, at most one piece message per
/// [`PROGRESS_INTERVAL`]. A client that went away ends it too.
async fn follow(mut sub: Subscription, tx: &Tx, task_id: &TaskId) -> Result<Finished, Error> {
    let mut sent_started = false;
    let mut pieces_seen = 0;
    let mut next_progress = tokio::time::Instant::now();
    loop {
        let status: JobStatus = sub.status.borrow_and_update().clone();
        if !sent_started && let Some(s) = &status.started {
            sent_started = true;
            let msg = Response::Started(dpb::DownloadStarted {
                task_id: task_id.to_string(),
                content_length: s.content_length,
                piece_length: s.piece_length,
                local_bytes: s.local_bytes,
            });
            send(tx, msg).await?;
        }
        let due = tokio::time::Instant::now() >= next_progress || status.outcome.is_some();
        if status.pieces_done != pieces_seen
            && due
            && let Some(p) = status.last_piece
        {
            pieces_seen = status.pieces_done;
            next_progress = tokio::time::Instant::now() + PROGRESS_INTERVAL;
            let piece = pb::Piece {
                number: p.number,
                offset: p.offset,
                length: p.length,
                digest: p.digest.to_string(),
                source: pb::PieceSource::Origin as i32,
                ..Default::default()
            };
            send(
                tx,
                Response::Piece(dpb::PieceProgress { piece: Some(piece), completed_bytes: status.completed_bytes }),
            )
            .await?;
        }
        if let Some(outcome) = status.outcome {
            return outcome;
        }
        // Pieces verified while a message was not due are reported when it is.
        let held_back = status.pieces_done != pieces_seen;
        tokio::select! {
            changed = sub.status.changed() => if changed.is_err() { return Err(Error::ShuttingDown) },
            _ = tokio::time::sleep_until(next_progress), if held_back => {}
            // The client went away: leave the job (the last to leave cancels it).
            _ = tx.closed() => return Err(Error::Abandoned),
        }
    }
}

async fn send(tx: &Tx, msg: Response) -> Result<(), Error> {
    tx.send(Ok(dpb::DownloadTaskResponse { response: Some(msg) }))
        .await
        .map_err(|_| Error::InvalidArgument("client went away".into()))
}

async fn finish(
    f: Finished,
    output: Option<std::path::PathBuf>,
    caller: Option<Caller>,
    task_id: &TaskId,
) -> Result<dpb::DownloadTaskResponse, Error> {
    if let Some(path) = output {
        let lease = f.entry.clone();
        tokio::task::spawn_blocking(move || place_output(&lease, &path, caller))
            .await
            .map_err(|e| Error::Storage(e.to_string()))??;
    }
    Ok(dpb::DownloadTaskResponse {
        response: Some(Response::Finished(dpb::DownloadFinished {
            task_id: task_id.to_string(),
            content_length: f.content_length,
            digest: f.digest.map(|d| d.to_string()).unwrap_or_default(),
            origin_bytes: f.sources.origin_bytes,
            peer_bytes: f.sources.peer_bytes,
            local_bytes: f.sources.local_bytes,
        })),
    })
}
