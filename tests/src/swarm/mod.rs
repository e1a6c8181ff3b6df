//! The swarm benchmark (`darter-bench swarm`, see `BENCHMARK.md`): N peers in
//! network namespaces on shaped links, Darter against the fluid bound and
//! against baselines (client-server `curl`, a BitTorrent swarm) in one run.
//!
//! - [`netns`]: namespaces, the bridge, `tc tbf` shaping, the loopback fallback.
pub mod bench;
pub mod bittorrent;
pub mod bound;
pub mod calibrate;
pub mod chart;
pub mod cluster;
pub mod downloads;
pub mod netns;
pub mod profile;
pub mod result;
pub mod scenario;
pub mod targets;
pub mod usage;
