//! One download's announce stream to its scheduler: requests go out through
//! an unbounded queue (bounded in practice by the task's piece count: one
//! report per piece plus a few state changes), responses come back in order.

use darter_common::task_id::TaskId;
use darter_proto::common::v1 as pb;
use darter_proto::scheduler::v1::announce_peer_request::Request as Req;
use darter_proto::scheduler::v1::announce_peer_response::Response as Resp;
use darter_proto::scheduler::v1::{self as spb, AnnouncePeerRequest, scheduler_client::SchedulerClient as Grpc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::back_to_source::NewPiece;

/// Sends reports on an announce stream; cheap to clone.
#[derive(Debug, Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<AnnouncePeerRequest>,
    host_id: String,
    task_id: String,
    peer_id: String,
}

impl Reporter {
    /// Sends one request; a closed stream is ignored (the download goes on
    /// without the scheduler).
    pub fn send(&self, request: Req) {
        let _ = self.tx.send(AnnouncePeerRequest {
            host_id: self.host_id.clone(),
            task_id: self.task_id.clone(),
            peer_id: self.peer_id.clone(),
            request: Some(request),
        });
    }

    /// A piece fetched from the origin: its digest becomes the reference.
    pub fn origin_piece(&self, piece: &NewPiece, content_length: Option<u64>, piece_length: u64) {
        self.send(Req::DownloadPieceBackToSourceFinished(spb::DownloadPieceBackToSourceFinishedRequest {
            piece: Some(proto_piece(piece, pb::PieceSource::Origin, "")),
            content_length,
            piece_length,
        }));
    }

    /// A piece fetched from a parent and verified.
    pub fn peer_piece(&self, piece: &NewPiece, parent_peer_id: &str, parent_host_id: &str) {
        self.send(Req::DownloadPieceFinished(spb::DownloadPieceFinishedRequest {
            piece: Some(proto_piece(piece, pb::PieceSource::Peer, parent_host_id)),
            parent_peer_id: parent_peer_id.to_string(),
        }));
    }
}

fn proto_piece(p: &NewPiece, source: pb::PieceSource, parent_host_id: &str) -> pb::Piece {
    pb::Piece {
        number: p.number,
        offset: p.offset,
        length: p.length,
        digest: p.digest.to_string(),
        source: source as i32,
        parent_host_id: parent_host_id.to_string(),
        cost_micros: 0,
    }
}

/// The announce stream of one download.
#[derive(Debug)]
pub struct Announcer {
    /// Sends reports.
    pub reporter: Reporter,
    responses: tonic::Streaming<spb::AnnouncePeerResponse>,
}

impl Announcer {
    /// Opens the stream with `register` as its first message.
    pub async fn open(
        mut client: Grpc<Channel>,
        host_id: &str,
        task_id: &TaskId,
        download: pb::Download,
        present_pieces: Vec<u32>,
    ) -> Result<Self, tonic::Status> {
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let (tx, rx) = mpsc::unbounded_channel();
        let reporter = Reporter {
            tx,
            host_id: host_id.to_string(),
            task_id: task_id.to_string(),
            peer_id: format!("{host_id}-{nonce:x}"),
        };
        reporter.send(Req::Register(spb::RegisterPeerRequest { download: Some(download), present_pieces }));
        let responses = client.announce_peer(UnboundedReceiverStream::new(rx)).await?.into_inner();
        Ok(Self { reporter, responses })
    }

    /// The next instruction from the scheduler; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Result<Resp, tonic::Status>> {
        loop {
            match self.responses.message().await {
                Ok(Some(spb::AnnouncePeerResponse { response: Some(r) })) => return Some(Ok(r)),
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(Err(status)),
            }
        }
    }

    /// Ends the request stream and waits (briefly) for the scheduler to
    /// close its side, so the last report is delivered before the call goes.
    pub async fn finish(self) {
        let Announcer { reporter, mut responses } = self;
        drop(reporter);
        let drain = async { while let Ok(Some(_)) = responses.message().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
    }
}
