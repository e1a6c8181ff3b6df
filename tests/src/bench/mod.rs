//! The library side of the `darter-bench` binary.
//!
//! - [`size`]: human byte sizes (`1GiB`, `64MiB`).
//! - [`backsource`]: dfget back-to-source vs `curl` from the same origin.
//! - [`report`]: medians, the Markdown table and the JSON document.

pub mod backsource;
pub mod report;
pub mod size;
