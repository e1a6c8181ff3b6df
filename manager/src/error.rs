//! The manager's error type, and the one place it becomes a gRPC status.
//!
//! Every variant has a gRPC code and a short stable [`Error::reason`] carried
//! in the `darter-reason` status metadata. Database details never reach a
//! caller: [`Error::Internal`] is logged where it is turned into a status and
//! answered with a generic message.

use std::borrow::Cow;
use std::time::Duration;

use darter_common::status::Reason;
use tonic::{Code, Status};

use crate::store::StoreError;

/// Everything a request to the manager can be refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field is missing or malformed.
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        /// The field, as named in the request (`ip`, `host.port`, `scopes.cidrs[1]`).
        field: Cow<'static, str>,
        /// What is wrong with it.
        message: String,
    },
    /// The thing asked about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The write would break a uniqueness or reference rule on the field.
    #[error("{}", conflict_message(.0))]
    AlreadyExists(&'static str),
    /// No credentials, or bad, expired or signed-out ones.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role does not allow this.
    #[error("{0}")]
    PermissionDenied(String),
    /// No cluster with an active scheduler matches the peer.
    #[error("no cluster with an active scheduler matches this peer")]
    NoCluster,
    /// The manager is stopping.
    #[error("manager is shutting down")]
    ShuttingDown,
    /// Too many attempts, or too many at once: retry after `retry_after`.
    #[error("{message}")]
    TooManyRequests {
        /// For people.
        message: String,
        /// How long to wait (REST: `Retry-After`, whole seconds rounded up).
        retry_after: Duration,
    },
    /// The request is larger than the server takes (`limit` bytes).
    #[error("the request body is larger than {limit} bytes (rest.max_body_size)")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The request took longer than the server's limit.
    #[error("{0}")]
    Timeout(String),
    /// The database failed; the detail is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidArgument`].
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), message: message.into() }
    }

    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound(_) | Self::NoCluster => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ShuttingDown => Code::Unavailable,
            Self::TooManyRequests { .. } | Self::TooLarge { .. } => Code::ResourceExhausted,
            Self::Timeout(_) => Code::DeadlineExceeded,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The stable reason (status metadata `darter-reason`, REST error code).
    pub fn reason(&self) -> Reason {
        match self {
            Self::InvalidArgument { .. } => Reason::InvalidArgument,
            Self::NotFound(_) => Reason::NotFound,
            Self::AlreadyExists("name" | "token_hash") => Reason::AlreadyExists,
            Self::AlreadyExists(_) => Reason::Conflict,
            Self::Unauthenticated(_) => Reason::Unauthenticated,
            Self::PermissionDenied(_) => Reason::PermissionDenied,
            Self::NoCluster => Reason::NoCluster,
            Self::ShuttingDown => Reason::ShuttingDown,
            Self::TooManyRequests { .. } => Reason::TooManyRequests,
            Self::TooLarge { .. } => Reason::TooLarge,
            Self::Timeout(_) => Reason::Timeout,
            Self::Internal(_) => Reason::Internal,
        }
    }
}

/// What a [`StoreError::Conflict`] on `field` means, for the caller.
fn conflict_message(field: &str) -> String {
    match field {
        "name" => "the name is taken".into(),
        "members" => "the cluster still has schedulers or seed peers; delete or move them first".into(),
        "state" => "the member is active; only inactive members can be deleted".into(),
        "role" => "the last root user cannot be deleted or demoted".into(),
        "is_default" => "another change of the default cluster happened at the same time; retry".into(),
        other => format!("conflict on {other}"),
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("not found".into()),
            StoreError::Conflict(field) => Self::AlreadyExists(field),
            StoreError::Invalid(field, message) => Self::invalid(field, message),
            StoreError::Db(detail) => Self::Internal(detail),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = match &e {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "database error");
                "internal error".to_string()
            }
            e => e.to_string(),
        };
        darter_common::status::with_reason(e.code(), message, e.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_codes_without_leaking_sql() {
        let s = Status::from(Error::from(StoreError::Db("near \"SELEC\": syntax error".into())));
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error"));
        assert_eq!(darter_common::status::reason(&s), Some(Reason::Internal));
        let s = Status::from(Error::from(StoreError::Invalid("hostname", "must not be empty".into())));
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "invalid hostname: must not be empty"));
        assert_eq!(Status::from(Error::from(StoreError::NotFound)).code(), Code::NotFound);
        assert_eq!(Status::from(Error::from(StoreError::Conflict("name"))).code(), Code::AlreadyExists);
        let s = Status::from(Error::NoCluster);
        assert_eq!((s.code(), darter_common::status::reason(&s)), (Code::NotFound, Some(Reason::NoCluster)));
    }
}
