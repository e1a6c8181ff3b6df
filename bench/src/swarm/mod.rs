//! The swarm benchmark (`darter-bench swarm`, see `docs/benchmarks.md`):
//! N peers in network namespaces on shaped links,
//! Darter against the fluid bound and against baselines (client-server
//! `curl`, a BitTorrent swarm) in one run.
//!
//! - [`netns`]: namespaces, the bridge, `tc tbf` shaping, the loopback fallback;
//! - [`calibrate`]: per peer count, uploads in a ring then downloads: measured
//!   rates and the socket floor (CPU per GiB of a bare socket pair);
//! - [`bound`]: the fluid bound T_min and medians; [`profile`]: profiles A and B;
//! - [`cluster`]: Darter's processes placed on the network;
//! - [`downloads`]: N clients started at one instant and timed;
//! - [`scenario`]: Darter's cold, warm and churn runs and the curl baseline;
//! - [`bittorrent`]: the aria2c + opentracker + mktorrent baseline;
//! - [`usage`]: CPU and RSS from `/proc`; [`progress`]: each Darter peer's
//!   downloaded bytes over time, from its metrics; [`result`]: one run's report and the
//!   Markdown table; [`targets`]: the targets checked; [`chart`]: the PNG;
//! - [`bench`](mod@bench): the whole benchmark, writing its outputs after every run.

pub mod bench;
pub mod bittorrent;
pub mod bound;
pub mod calibrate;
pub mod chart;
pub mod cluster;
pub mod downloads;
pub mod netns;
pub mod profile;
pub mod progress;
pub mod result;
pub mod scenario;
pub mod targets;
pub mod usage;
