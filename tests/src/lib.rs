//! Darter's end-to-end test kit and benchmarks.
//!
//! This crate is the workspace's multi-process test layer: integration tests
//! under `tests/tests/` start real binaries on loopback, and the
//! `darter-bench` binary measures Darter against baselines (see
//! `BENCHMARK.md`).
//!
//! Layout:
//! - [`origin`]: a real HTTP/1.1 origin server on `127.0.0.1:0` with
//!   configurable misbehaviour and byte counting.
//! - [`data`]: deterministic random content and SHA-256 helpers.
//! - [`cluster`]: a scheduler, a seed peer and N peers as real processes on
//!   loopback, optionally wired through a manager.
//! - [`manager`]: a real manager process on a temporary SQLite database.
//! - [`dfdaemon`](mod@dfdaemon): a real dfdaemon process on loopback, killed on drop.
//! - [`registry`], [`oci`], [`containerd`], [`tool`]: a real OCI registry
//!   (`docker-registry`, plain or HTTPS with htpasswd, blob fetches counted
//!   from its access log), test images built offline with umoci and pushed
//!   with skopeo, a containerd per node pulling with `ctr`, and finding the
//!   tools (skipped with a message outside CI).
//! - [`service`]: one real service process (manager, scheduler, dfdaemon)
//!   started with `--ready-file`: its listeners bind port 0 and it publishes
//!   what the kernel picked, so the kit never picks a port; ready once
//!   `/healthz` answers 200; kill, terminate, restart on the same addresses.
//! - [`eventually`]: the one poll loop (`eventually`, `wait_until`, `poll`)
//!   with one default deadline, scaled by `DARTER_TEST_PATIENCE`.
//! - [`metrics`]: one `/metrics` scrape and its parser.
//! - [`fake_manager`]: a fake manager gRPC service in process (records
//!   registrations, keepalives and lists; answers what the test sets).
//! - [`net`]: an address nothing listens on (for dead-peer tests).
//! - [`process`]: [`process::ChildGuard`] (kill-on-drop children) and
//!   [`process::signal`].
//! - [`bench`](mod@bench): the library side of `darter-bench` (size parsing, the
//!   back-to-source comparison, reports); `src/bin/darter-bench.rs` only
//!   parses arguments.
//! - [`swarm`]: the swarm benchmark: peers in network namespaces on shaped
//!   links, Darter against the fluid bound, curl and BitTorrent baselines.

pub mod bench;
pub mod cluster;
pub mod containerd;
pub mod data;
pub mod dfdaemon;
pub mod eventually;
pub mod fake_manager;
pub mod manager;
pub mod metrics;
pub mod net;
pub mod oci;
pub mod origin;
pub mod process;
pub mod registry;
pub mod service;
pub mod swarm;
pub mod tool;

pub use eventually::{eventually, eventually_some};
pub use data::{random_bytes, sha256_file, sha256_hex, write_random_file};
