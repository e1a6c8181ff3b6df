//! The daemon's gRPC services: the download API on the unix socket (dfget)
//! and the upload API on TCP (other peers, the scheduler).

pub mod download;
pub mod upload;

use darter_proto::common::v1 as pb;

use crate::storage::{StoredPiece, TaskEntry};

/// A stored piece as the proto `Piece`.
pub fn piece_to_proto(p: &StoredPiece, source: pb::PieceSource) -> pb::Piece {
    pb::Piece {
        number: p.number,
        offset: p.offset,
        length: p.length,
        digest: p.digest.to_string(),
        source: source as i32,
        ..Default::default()
    }
}

/// A stored task as the proto `TaskInfo`.
pub fn task_info(t: &TaskEntry, with_pieces: bool) -> darter_proto::dfdaemon::v1::TaskInfo {
    let r = t.record();
    let state = if r.complete {
        pb::TaskState::Succeeded
    } else if t.completed_bytes() > 0 {
        pb::TaskState::Running
    } else {
        pb::TaskState::Pending
    };
    darter_proto::dfdaemon::v1::TaskInfo {
        id: r.id,
        url: r.url,
        state: state as i32,
        content_length: r.content_length,
        piece_length: r.piece_length,
        piece_count: r.content_length.map(|l| darter_common::piece::piece_count(l, r.piece_length)),
        pieces: if with_pieces {
            t.pieces().iter().map(|p| piece_to_proto(p, pb::PieceSource::Local)).collect()
        } else {
            Vec::new()
        },
        digest: r.digest.unwrap_or_default(),
        created_at: r.created_at,
        accessed_at: r.accessed_at,
    }
}
