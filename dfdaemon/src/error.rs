//! dfdaemon's error type, and the one place it becomes a gRPC status: each
//! variant's code and [`Reason`] are chosen here and nowhere else (dfget turns
//! the reason back into its exit code).

use darter_common::digest::Digest;
use darter_common::status::Reason;
use tonic::{Code, Status};

/// Everything that can go wrong in the daemon.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad URL, bad digest, bad header...).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The origin answered with an error status.
    #[error("origin answered {status} for {url}")]
    OriginStatus {
        /// HTTP status code.
        status: u16,
        /// The URL asked for (credentials stripped).
        url: String,
    },
    /// The origin could not be reached or broke the connection too often.
    #[error("origin unreachable: {0}")]
    OriginUnavailable(String),
    /// The origin's content changed while it was being fetched (a range
    /// request with `If-Range` got the whole new content).
    #[error("origin content changed during the download of {0}; try again")]
    OriginChanged(String),
    /// The origin sent something we cannot use (bad Content-Range, short body...).
    #[error("origin protocol error: {0}")]
    OriginProtocol(String),
    /// The download took longer than its timeout.
    #[error("download timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The content did not match the expected digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the caller asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The content is not available without the origin and back-to-source is disabled.
    #[error("back-to-source is disabled for this download and no peer has the content")]
    BackToSourceDisabled,
    /// No scheduler answered and back-to-source is disabled for this download.
    #[error("back-to-source is disabled for this download and no scheduler is reachable: {0}")]
    SchedulerUnavailable(String),
    /// The scheduler refused this download (the message says why).
    #[error("the scheduler refused the download: {0}")]
    SchedulerRefused(String),
    /// The task is not in local storage.
    #[error("task {0} not found")]
    TaskNotFound(String),
    /// The task is downloading and cannot be changed now.
    #[error("task {0} is busy")]
    TaskBusy(String),
    /// Writing the output file failed.
    #[error("cannot write output {path}: {reason}")]
    Output {
        /// Output path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The disk is full.
    #[error("no space left on device while storing {0}")]
    NoSpace(String),
    /// Local storage failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// Every request for the download left before it finished.
    #[error("download abandoned by every request")]
    Abandoned,
    /// The daemon is shutting down.
    #[error("dfdaemon is shutting down")]
    ShuttingDown,
    /// A download trigger reached a daemon that is not a seed peer.
    #[error("this dfdaemon is not a seed peer; download triggers are refused")]
    NotSeedPeer,
    /// A configured limit was reached (the message names it).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
}

impl Error {
    /// Storage error from an I/O error, recognising a full disk.
    pub fn storage(context: &str, e: &std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            Self::NoSpace(context.to_string())
        } else {
            Self::Storage(format!("{context}: {e}"))
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::OriginStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::OriginUnavailable(_) | Self::OriginProtocol(_) => true,
            _ => false,
        }
    }

    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::OriginStatus { status: 404 | 410, .. } | Self::TaskNotFound(_) => Code::NotFound,
            Self::OriginStatus { status: 401 | 403, .. } => Code::PermissionDenied,
            Self::OriginStatus { .. } | Self::OriginUnavailable(_) | Self::ShuttingDown => Code::Unavailable,
            Self::OriginProtocol(_) => Code::DataLoss,
            Self::OriginChanged(_) => Code::Aborted,
            Self::Timeout(_) => Code::DeadlineExceeded,
            Self::DigestMismatch { .. } => Code::DataLoss,
            Self::BackToSourceDisabled | Self::TaskBusy(_) | Self::NotSeedPeer => Code::FailedPrecondition,
            Self::SchedulerUnavailable(_) => Code::Unavailable,
            Self::SchedulerRefused(_) => Code::FailedPrecondition,
            Self::Output { .. } => Code::PermissionDenied,
            Self::NoSpace(_) | Self::LimitExceeded(_) => Code::ResourceExhausted,
            Self::Storage(_) => Code::Internal,
            Self::Abandoned => Code::Cancelled,
        }
    }

    /// The stable reason carried in the status metadata (`darter-reason`),
    /// so clients can tell errors apart without parsing messages.
    pub fn reason(&self) -> Reason {
        match self {
            Self::InvalidArgument(_) => Reason::InvalidArgument,
            Self::OriginStatus { .. } => Reason::OriginStatus,
            Self::OriginUnavailable(_) => Reason::OriginUnavailable,
            Self::OriginProtocol(_) => Reason::OriginProtocol,
            Self::OriginChanged(_) => Reason::OriginChanged,
            Self::Timeout(_) => Reason::Timeout,
            Self::DigestMismatch { .. } => Reason::DigestMismatch,
            Self::BackToSourceDisabled => Reason::BackToSourceDisabled,
            Self::SchedulerUnavailable(_) => Reason::SchedulerUnavailable,
            Self::SchedulerRefused(_) => Reason::SchedulerRefused,
            Self::TaskNotFound(_) => Reason::TaskNotFound,
            Self::TaskBusy(_) => Reason::TaskBusy,
            Self::Output { .. } => Reason::Output,
            Self::NoSpace(_) => Reason::NoSpace,
            Self::Storage(_) => Reason::Storage,
            Self::ShuttingDown => Reason::ShuttingDown,
            Self::Abandoned => Reason::Abandoned,
            Self::NotSeedPeer => Reason::NotSeedPeer,
            Self::LimitExceeded(_) => Reason::LimitExceeded,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        darter_common::status::with_reason(e.code(), e.to_string(), e.reason())
    }
}

/// Result with the daemon's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
