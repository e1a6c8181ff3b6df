//! The gRPC contract between Darter's components.
//!
//! One module per proto package, each versioned (`v1`):
//! - [`common::v1`]: hosts, tasks, pieces, downloads;
//! - [`dfdaemon::v1`]: the download API (unix socket, used by dfget) and the
//!   upload API (piece availability and seed triggers, used by peers and the scheduler);
//! - [`scheduler::v1`]: host announcements and the bidirectional peer announce stream;
//! - [`manager::v1`]: member registration, keepalive and `ListSchedulers`.
//!
//! Piece *bytes* never travel inside these messages: they go over the dfdaemon's
//! piece data server (see the dfdaemon crate).
#![allow(missing_docs, clippy::all)]

/// Common types.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("darter.common.v1");
    }
}

/// dfdaemon APIs.
pub mod dfdaemon {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("darter.dfdaemon.v1");
    }
}

/// scheduler API.
pub mod scheduler {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("darter.scheduler.v1");
    }
}

/// manager API.
pub mod manager {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("darter.manager.v1");
    }
}
