//! The library side of the `darter-bench` binary.
//!
//! - [`size`]: human byte sizes (`1GiB`, `64MiB`).
//! - [`backsource`]: dfget back-to-source vs `curl` from the same origin.
//! - [`mirror`]: a blob through dfdaemon's registry mirror (cold and warm) vs
//!   straight from the registry.
//! - [`p2p`]: one parent and one child on loopback: throughput and CPU per
//!   GiB of both, against curl.
//! - [`scratch`]: the scratch directory and random file each run serves.
//! - [`report`]: medians, the Markdown table and the JSON document.

pub mod backsource;
pub mod mirror;
pub mod p2p;
pub mod report;
pub mod scratch;
pub mod size;
