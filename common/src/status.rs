//! One way for every service to turn its error into a gRPC status: the code,
//! the message, and a stable machine-readable [`Reason`] in the
//! `darter-reason` metadata, so clients tell errors apart without parsing
//! messages.
//!
//! The reasons of every service live in one enum because the metadata is one
//! wire contract: a client (dfget, a scheduler's manager client) matches on
//! [`Reason`] and the compiler tells it when a reason is added. The wire
//! strings never change once released (deployed dfgets turn them into exit
//! codes); a reason renamed in Rust keeps its string.

use tonic::{Code, Status};

/// Metadata key carrying the reason.
pub const REASON_KEY: &str = "darter-reason";

/// Declares [`Reason`] with its wire strings, and [`Reason::ALL`].
macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// Why a request failed, as carried in the `darter-reason` status
        /// metadata. Grouped by the service that sends it; a few are shared.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The wire string (`"origin_status"`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $wire,)*
                }
            }

            /// The reason a wire string names; `None` for one this build does
            /// not know (a newer peer's).
            pub fn from_wire(s: &str) -> Option<Reason> {
                match s {
                    $($wire => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    // Shared.
    /// A field of the request is missing or malformed.
    InvalidArgument = "invalid_argument",
    /// The thing asked about does not exist (manager, scheduler).
    NotFound = "not_found",
    /// The service is stopping.
    ShuttingDown = "shutting_down",
    /// Content (dfdaemon) or a piece (scheduler) does not match its digest.
    DigestMismatch = "digest_mismatch",

    // dfdaemon.
    /// The origin answered with an error status.
    OriginStatus = "origin_status",
    /// The origin could not be reached.
    OriginUnavailable = "origin_unavailable",
    /// The origin sent something unusable.
    OriginProtocol = "origin_protocol",
    /// The origin's content changed during the download.
    OriginChanged = "origin_changed",
    /// The download took longer than its timeout.
    Timeout = "timeout",
    /// Back-to-source is disabled and no peer has the content.
    BackToSourceDisabled = "back_to_source_disabled",
    /// Back-to-source is disabled and no scheduler is reachable.
    SchedulerUnavailable = "scheduler_unavailable",
    /// The scheduler refused the download.
    SchedulerRefused = "scheduler_refused",
    /// The task is not in the daemon's storage.
    TaskNotFound = "task_not_found",
    /// The task is downloading and cannot be changed now.
    TaskBusy = "task_busy",
    /// The output file cannot be written.
    Output = "output",
    /// The disk is full.
    NoSpace = "no_space",
    /// Local storage failed.
    Storage = "storage",
    /// Every request for the download left before it finished.
    Abandoned = "abandoned",
    /// A download trigger reached a daemon that is not a seed peer.
    NotSeedPeer = "not_seed_peer",

    // manager.
    /// A unique name (or token) is taken.
    AlreadyExists = "already_exists",
    /// The write would break another rule (references, the last root user...).
    Conflict = "conflict",
    /// No credentials, or bad ones.
    Unauthenticated = "unauthenticated",
    /// The caller's role does not allow this.
    PermissionDenied = "permission_denied",
    /// No cluster with an active scheduler matches the peer.
    NoCluster = "no_cluster",
    /// The database failed (the detail is logged, not sent).
    Internal = "internal",

    // scheduler.
    /// The first message of an announce stream was not `register`.
    NotRegistered = "not_registered",
    /// A message that does not fit the peer's state.
    OutOfOrder = "out_of_order",
    /// A message names another task or host than its stream's `register`.
    StreamMismatch = "stream_mismatch",
    /// The task ID is not the download's.
    TaskIdMismatch = "task_id_mismatch",
    /// The peer's host never announced itself.
    UnknownHost = "unknown_host",
    /// Content or piece length that disagree with the task or the limits.
    Geometry = "geometry",
    /// A piece number past the end of the task.
    PieceOutOfRange = "piece_out_of_range",
    /// A piece reported from a parent before any origin fetcher reported it.
    NoReferenceDigest = "no_reference_digest",
    /// Too many reschedules while the origin is busy.
    TooManyReschedules = "too_many_reschedules",
    /// The peer was removed or replaced.
    Evicted = "evicted",
    /// The peer does not read its announce stream.
    Stalled = "stalled",

    // Shared, added later.
    /// A configured limit was reached: content larger than allowed
    /// (dfdaemon), too many tasks or downloads of one host (scheduler).
    LimitExceeded = "limit_exceeded",
    // manager (REST limits).
    /// Too many requests (sign-in attempts, password checks): retry after
    /// the time the answer gives.
    TooManyRequests = "too_many_requests",
    /// The request body is larger than the server takes.
    TooLarge = "too_large",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status with `reason` attached.
pub fn with_reason(code: Code, message: String, reason: Reason) -> Status {
    let mut status = Status::new(code, message);
    status.metadata_mut().insert(REASON_KEY, tonic::metadata::MetadataValue::from_static(reason.as_str()));
    status
}

/// The reason a status carries: `None` when it carries none, or one this
/// build does not know.
pub fn reason(status: &Status) -> Option<Reason> {
    status.metadata().get(REASON_KEY).and_then(|v| v.to_str().ok()).and_then(Reason::from_wire)
}

/// Whether the status carries a reason at all (known to this build or not):
/// a status without one did not come from a Darter service's error mapping.
pub fn has_reason(status: &Status) -> bool {
    status.metadata().get(REASON_KEY).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        let s = with_reason(Code::NotFound, "gone".into(), Reason::TaskNotFound);
        assert_eq!((s.code(), s.message(), reason(&s)), (Code::NotFound, "gone", Some(Reason::TaskNotFound)));
        assert_eq!(s.metadata().get(REASON_KEY).unwrap(), "task_not_found");
        assert!(has_reason(&s));
        assert_eq!(reason(&Status::internal("x")), None);
        assert!(!has_reason(&Status::internal("x")));
    }

    #[test]
    fn every_reason_round_trips_through_its_wire_string() {
        for &r in Reason::ALL {
            assert_eq!(Reason::from_wire(r.as_str()), Some(r), "{r:?}");
            assert_eq!(reason(&with_reason(Code::Unknown, String::new(), r)), Some(r), "{r:?} through a status");
            assert_eq!(r.to_string(), r.as_str());
        }
        assert_eq!(Reason::from_wire("no_such_reason"), None);
        assert_eq!(Reason::from_wire(""), None);
        let mut unknown = Status::internal("x");
        unknown.metadata_mut().insert(REASON_KEY, "from_a_newer_peer".parse().unwrap());
        assert_eq!(reason(&unknown), None);
        assert!(has_reason(&unknown));
    }

    /// The wire strings are a contract with deployed clients: this list
    /// changes only by adding to it.
    #[test]
    fn the_wire_strings_are_the_released_ones() {
        let wire: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            wire,
            [
                "invalid_argument",
                "not_found",
                "shutting_down",
                "digest_mismatch",
                "origin_status",
                "origin_unavailable",
                "origin_protocol",
                "origin_changed",
                "timeout",
                "back_to_source_disabled",
                "scheduler_unavailable",
                "scheduler_refused",
                "task_not_found",
                "task_busy",
                "output",
                "no_space",
                "storage",
                "abandoned",
                "not_seed_peer",
                "already_exists",
                "conflict",
                "unauthenticated",
                "permission_denied",
                "no_cluster",
                "internal",
                "not_registered",
                "out_of_order",
                "stream_mismatch",
                "task_id_mismatch",
                "unknown_host",
                "geometry",
                "piece_out_of_range",
                "no_reference_digest",
                "too_many_reschedules",
                "evicted",
                "stalled",
                "limit_exceeded",
                "too_many_requests",
                "too_large",
            ]
        );
        let unique: std::collections::HashSet<&str> = wire.iter().copied().collect();
        assert_eq!(unique.len(), wire.len(), "two reasons share a wire string");
    }
}
