//! The shared state of one running download, watched by every request that
//! joined it. Progress is cumulative, so a slow watcher that skips updates
//! still sees the right totals.

use tokio::sync::watch;

use super::back_to_source::NewPiece;
use crate::error::Error;
use crate::storage::{Lease, TaskEntry};

/// The task has been sized.
#[derive(Debug, Clone)]
pub struct Started {
    /// Content length, when known.
    pub content_length: Option<u64>,
    /// Piece length.
    pub piece_length: u64,
    /// Bytes present before this download fetched anything.
    pub local_bytes: u64,
}

/// Where the bytes of a finished download came from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// From the origin.
    pub origin_bytes: u64,
    /// From other peers.
    pub peer_bytes: u64,
    /// Already local.
    pub local_bytes: u64,
}

/// A finished download.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The complete, verified task, leased until every watcher has placed its output.
    pub entry: Lease,
    /// Content length.
    pub content_length: u64,
    /// Whole-content digest, when it was verified.
    pub digest: Option<darter_common::digest::Digest>,
    /// Where the bytes came from.
    pub sources: Sources,
}

/// Snapshot of a download.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Set once sized.
    pub started: Option<Started>,
    /// Bytes present so far.
    pub completed_bytes: u64,
    /// Sequence number of pieces finished (for watchers to detect new ones).
    pub pieces_done: u64,
    /// The latest piece.
    pub last_piece: Option<NewPiece>,
    /// Bytes fetched from the origin so far.
    pub origin_bytes: u64,
    /// Bytes fetched from other peers so far.
    pub peer_bytes: u64,
    /// Set once the download ended.
    pub outcome: Option<Result<Finished, Error>>,
}

/// Publisher side of a download's status.
#[derive(Debug)]
pub struct Progress(watch::Sender<Status>);

impl Progress {
    /// A fresh status.
    pub fn new() -> Self {
        Self(watch::channel(Status::default()).0)
    }

    /// A watcher.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.0.subscribe()
    }

    /// The task is sized (pieces already present count as local).
    pub fn started(&self, entry: &TaskEntry) {
        let local = entry.completed_bytes();
        self.0.send_modify(|s| {
            if s.started.is_none() {
                s.started = Some(Started {
                    content_length: entry.content_length(),
                    piece_length: entry.piece_length(),
                    local_bytes: local,
                });
                s.completed_bytes = local;
            }
        });
    }

    /// A piece arrived from the origin.
    pub fn piece_from_origin(&self, piece: NewPiece) {
        self.0.send_modify(|s| {
            s.completed_bytes += piece.length;
            s.origin_bytes += piece.length;
            s.pieces_done += 1;
            s.last_piece = Some(piece);
        });
    }

    /// A piece arrived from a parent and was verified.
    pub fn piece_from_peer(&self, piece: NewPiece) {
        self.0.send_modify(|s| {
            s.completed_bytes += piece.length;
            s.peer_bytes += piece.length;
            s.pieces_done += 1;
            s.last_piece = Some(piece);
        });
    }

    /// The download ended.
    pub fn finish(&self, outcome: Result<Finished, Error>) {
        self.0.send_modify(|s| s.outcome = Some(outcome));
    }

    /// Current snapshot.
    pub fn snapshot(&self) -> Status {
        self.0.borrow().clone()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
