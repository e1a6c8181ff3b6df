//! The scheduler's error type, and the one place it becomes a gRPC status.
//!
//! Every rejection names what was wrong; its [`Error::reason`] is a short
//! stable label used both in the `darter-reason` status metadata and in the
//! `scheduler_rejections_total{reason}` metric.

use darter_common::status::Reason;
use tonic::{Code, Status};

/// Everything a request to the scheduler can be refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field is missing or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The first message on an announce stream was not `register`.
    #[error("first message must be register")]
    NotRegistered,
    /// A message that does not fit the peer's state (e.g. a second `register`).
    #[error("{0}")]
    OutOfOrder(String),
    /// A message on a stream names another task or host than its `register`.
    #[error("{0}")]
    StreamMismatch(String),
    /// The task ID is not the ID of the download it was registered with.
    #[error("task_id {given} does not match the download (url, digest, tag and application give {expected})")]
    TaskIdMismatch {
        /// The task ID the peer sent.
        given: String,
        /// The ID the download yields.
        expected: String,
    },
    /// The peer's host never announced itself (or was collected).
    #[error("unknown host {0}: announce it first")]
    UnknownHost(String),
    /// Content length / piece length that disagree with the task or the limits.
    #[error("{0}")]
    Geometry(String),
    /// A piece number past the end of the task.
    #[error("piece {number} is out of range: the task has {count} pieces")]
    PieceOutOfRange {
        /// The piece number reported.
        number: u32,
        /// Pieces of the task.
        count: u32,
    },
    /// A peer reported a piece from a parent before any origin fetcher did.
    #[error("piece {0} has no reference digest yet")]
    NoReferenceDigest(u32),
    /// A peer reported a piece whose digest is not the reference.
    #[error("piece {0}: digest does not match the reference")]
    DigestMismatch(u32),
    /// An origin fetcher reported a digest that conflicts with the
    /// reference: it is blocklisted for the task.
    #[error(
        "piece {0}: the origin digest reported conflicts with the reference; this host may no longer serve the task"
    )]
    OriginConflict(u32),
    /// The peer asked to be rescheduled too often and the origin is busy.
    #[error("too many reschedules ({0}) and the task's back-to-source limit is reached")]
    TooManyReschedules(u32),
    /// A task or peer the caller asked about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The peer this stream belonged to was removed or replaced.
    #[error("{0}")]
    Evicted(String),
    /// The peer does not read its announce stream.
    #[error("peer does not read its announce stream")]
    Stalled,
    /// The caller's certificate does not allow this (another member's host,
    /// a role that may not make the call).
    #[error("{0}")]
    PermissionDenied(String),
    /// The scheduler is stopping.
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// A configured limit was reached (the message names it).
    #[error("{0}")]
    LimitExceeded(String),
}

impl Error {
    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_)
            | Self::StreamMismatch(_)
            | Self::TaskIdMismatch { .. }
            | Self::Geometry(_)
            | Self::PieceOutOfRange { .. }
            | Self::NoReferenceDigest(_)
            | Self::DigestMismatch(_)
            | Self::OriginConflict(_) => Code::InvalidArgument,
            Self::NotRegistered | Self::OutOfOrder(_) | Self::UnknownHost(_) => Code::FailedPrecondition,
            Self::TooManyReschedules(_) | Self::Stalled | Self::LimitExceeded(_) => Code::ResourceExhausted,
            Self::NotFound(_) => Code::NotFound,
            Self::Evicted(_) => Code::Aborted,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ShuttingDown => Code::Unavailable,
        }
    }

    /// A short stable label (status metadata `darter-reason`, metric label).
    pub fn reason(&self) -> Reason {
        match self {
            Self::InvalidArgument(_) => Reason::InvalidArgument,
            Self::NotRegistered => Reason::NotRegistered,
            Self::OutOfOrder(_) => Reason::OutOfOrder,
            Self::StreamMismatch(_) => Reason::StreamMismatch,
            Self::TaskIdMismatch { .. } => Reason::TaskIdMismatch,
            Self::UnknownHost(_) => Reason::UnknownHost,
            Self::Geometry(_) => Reason::Geometry,
            Self::PieceOutOfRange { .. } => Reason::PieceOutOfRange,
            Self::NoReferenceDigest(_) => Reason::NoReferenceDigest,
            Self::DigestMismatch(_) | Self::OriginConflict(_) => Reason::DigestMismatch,
            Self::TooManyReschedules(_) => Reason::TooManyReschedules,
            Self::NotFound(_) => Reason::NotFound,
            Self::Evicted(_) => Reason::Evicted,
            Self::Stalled => Reason::Stalled,
            Self::PermissionDenied(_) => Reason::PermissionDenied,
            Self::ShuttingDown => Reason::ShuttingDown,
            Self::LimitExceeded(_) => Reason::LimitExceeded,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        darter_common::status::with_reason(e.code(), e.to_string(), e.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_code_message_and_reason() {
        let s = Status::from(Error::DigestMismatch(3));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "piece 3: digest does not match the reference");
        assert_eq!(s.metadata().get("darter-reason").unwrap(), "digest_mismatch");
        assert_eq!(Status::from(Error::NotRegistered).code(), Code::FailedPrecondition);
        assert_eq!(Status::from(Error::TooManyReschedules(11)).code(), Code::ResourceExhausted);
    }
}
