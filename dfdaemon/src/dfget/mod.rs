//! `dfget`: download a URL through the local dfdaemon.
//!
//! Exit codes (stable, for scripts):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | downloaded, verified, written to the output |
//! | 1 | failed for another reason (see the message) |
//! | 2 | bad command line or request (bad URL, digest, header) |
//! | 3 | no dfdaemon is listening on the socket |
//! | 4 | the origin failed (error status, unreachable, broken body) |
//! | 5 | the content does not match `--digest` |
//! | 6 | the download timed out |
//! | 7 | back-to-source is disabled and no peer has the content |
//! | 8 | the output cannot be written (or the disk is full) |

mod args;
mod client;
mod progress;

pub use args::Args;
pub use client::{Failure, connect, run};

/// Exit codes; see the module doc.
pub mod exit {
    use darter_common::status::Reason;

    /// Success.
    pub const OK: i32 = 0;
    /// Other failure.
    pub const FAILED: i32 = 1;
    /// Bad input.
    pub const USAGE: i32 = 2;
    /// No daemon.
    pub const NO_DAEMON: i32 = 3;
    /// Origin failed.
    pub const ORIGIN: i32 = 4;
    /// Digest mismatch.
    pub const DIGEST: i32 = 5;
    /// Timeout.
    pub const TIMEOUT: i32 = 6;
    /// Back-to-source disabled.
    pub const NO_SOURCE: i32 = 7;
    /// Output not writable.
    pub const OUTPUT: i32 = 8;

    /// The exit code for a failure the daemon gave `reason` for. Every
    /// reason is named (no catch-all), so a new one needs a decision here.
    pub fn for_reason(reason: Reason) -> i32 {
        match reason {
            Reason::OriginStatus | Reason::OriginUnavailable | Reason::OriginProtocol | Reason::OriginChanged => ORIGIN,
            Reason::DigestMismatch => DIGEST,
            Reason::Timeout => TIMEOUT,
            Reason::BackToSourceDisabled | Reason::SchedulerUnavailable => NO_SOURCE,
            Reason::Output | Reason::NoSpace => OUTPUT,
            Reason::InvalidArgument => USAGE,
            // The daemon's other reasons.
            Reason::SchedulerRefused
            | Reason::TaskNotFound
            | Reason::TaskBusy
            | Reason::Storage
            | Reason::Abandoned
            | Reason::ShuttingDown
            | Reason::NotSeedPeer
            | Reason::LimitExceeded => FAILED,
            // The manager's and the scheduler's: a daemon does not pass them on.
            Reason::NotFound
            | Reason::AlreadyExists
            | Reason::Conflict
            | Reason::Unauthenticated
            | Reason::PermissionDenied
            | Reason::NoCluster
            | Reason::Internal
            | Reason::NotRegistered
            | Reason::OutOfOrder
            | Reason::StreamMismatch
            | Reason::TaskIdMismatch
            | Reason::UnknownHost
            | Reason::Geometry
            | Reason::PieceOutOfRange
            | Reason::NoReferenceDigest
            | Reason::TooManyReschedules
            | Reason::Evicted
            | Reason::Stalled
            | Reason::TooManyRequests
            | Reason::TooLarge => FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use darter_common::status::{REASON_KEY, Reason, with_reason};
    use tonic::{Code, Status};

    use super::exit;

    /// README's exit-code table (section "dfget"): code -> meaning.
    fn readme_table() -> std::collections::BTreeMap<i32, String> {
        let readme = include_str!("../../../README.md");
        let section = readme.split("\n## dfget\n").nth(1).expect("README has a dfget section");
        let section = section.split("\n## ").next().unwrap();
        section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
                Some((cells.first()?.parse().ok()?, cells.get(1)?.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_readme_lists_every_exit_code() {
        let table = readme_table();
        let codes: Vec<i32> = table.keys().copied().collect();
        assert_eq!(
            codes,
            [
                exit::OK,
                exit::FAILED,
                exit::USAGE,
                exit::NO_DAEMON,
                exit::ORIGIN,
                exit::DIGEST,
                exit::TIMEOUT,
                exit::NO_SOURCE,
                exit::OUTPUT
            ]
        );
    }

    /// For every reason, words of the README row its exit code must land on.
    #[test]
    fn every_reason_exits_as_the_readme_says() {
        let expected: &[(Reason, &str)] = &[
            (Reason::InvalidArgument, "bad command line or request"),
            (Reason::NotFound, "other failure"),
            (Reason::ShuttingDown, "other failure"),
            (Reason::DigestMismatch, "does not match `--digest`"),
            (Reason::OriginStatus, "origin failed: error status"),
            (Reason::OriginUnavailable, "unreachable"),
            (Reason::OriginProtocol, "broken body"),
            (Reason::OriginChanged, "origin failed"),
            (Reason::Timeout, "timed out"),
            (Reason::BackToSourceDisabled, "back-to-source disabled and no peer has the content"),
            (Reason::SchedulerUnavailable, "no scheduler is reachable"),
            (Reason::SchedulerRefused, "other failure"),
            (Reason::TaskNotFound, "other failure"),
            (Reason::TaskBusy, "other failure"),
            (Reason::Output, "output not writable"),
            (Reason::NoSpace, "disk full"),
            (Reason::Storage, "other failure"),
            (Reason::Abandoned, "other failure"),
            (Reason::NotSeedPeer, "other failure"),
            (Reason::LimitExceeded, "other failure"),
            (Reason::AlreadyExists, "other failure"),
            (Reason::Conflict, "other failure"),
            (Reason::Unauthenticated, "other failure"),
            (Reason::PermissionDenied, "other failure"),
            (Reason::NoCluster, "other failure"),
            (Reason::Internal, "other failure"),
            (Reason::NotRegistered, "other failure"),
            (Reason::OutOfOrder, "other failure"),
            (Reason::StreamMismatch, "other failure"),
            (Reason::TaskIdMismatch, "other failure"),
            (Reason::UnknownHost, "other failure"),
            (Reason::Geometry, "other failure"),
            (Reason::PieceOutOfRange, "other failure"),
            (Reason::NoReferenceDigest, "other failure"),
            (Reason::TooManyReschedules, "other failure"),
            (Reason::Evicted, "other failure"),
            (Reason::Stalled, "other failure"),
            (Reason::TooManyRequests, "other failure"),
            (Reason::TooLarge, "other failure"),
        ];
        for r in Reason::ALL {
            assert!(expected.iter().any(|(e, _)| e == r), "{r:?} has no expected README row here");
        }
        let table = readme_table();
        for &(reason, words) in expected {
            let code = exit::for_reason(reason);
            let row = table.get(&code).unwrap_or_else(|| panic!("{reason:?} exits {code}, not in the README"));
            assert!(row.contains(words), "{reason:?} exits {code} ({row:?}); the README puts it under {words:?}");
            let status = with_reason(Code::Unknown, String::new(), reason);
            assert_eq!(super::client::code_for(&status), code, "{reason:?} through a status");
        }
    }

    #[test]
    fn statuses_without_a_known_reason_exit_by_their_code() {
        assert_eq!(super::client::code_for(&Status::unavailable("connection refused")), exit::NO_DAEMON);
        assert_eq!(super::client::code_for(&Status::deadline_exceeded("slow")), exit::TIMEOUT);
        assert_eq!(super::client::code_for(&Status::internal("x")), exit::FAILED);
        // A newer daemon's reason this dfget does not know: the daemon answered.
        let mut newer = Status::unavailable("busy");
        newer.metadata_mut().insert(REASON_KEY, "from_a_newer_daemon".parse().unwrap());
        assert_eq!(super::client::code_for(&newer), exit::FAILED);
    }
}
