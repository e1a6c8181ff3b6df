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
}
