//! Darter's multi-process test kit.
//!
//! This crate is the workspace's end-to-end test layer: integration tests
//! under `tests/tests/` start real binaries on loopback through it, the
//! `darter-sandbox` binary (`src/bin/darter-sandbox.rs`) runs a local cluster
//! by hand, and the `darter-bench` crate (`bench/`) builds its benchmarks on
//! the same launchers. Crates' own tests use it too (the manager's store
//! conformance suite takes its scratch databases from [`db`]).
//!
//! Layout:
//! - [`origin`]: a real HTTP/1.1 origin server on `127.0.0.1:0` with
//!   configurable misbehaviour and byte counting.
//! - [`data`]: deterministic random content and SHA-256 helpers.
//! - [`cluster`]: a scheduler, a seed peer and N peers as real processes on
//!   loopback, optionally wired through a manager.
//! - [`manager`]: a real manager process on a temporary SQLite database (or
//!   a database URL given to it).
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
//! - [`metrics`]: one scrape of a `/metrics` page and the value of a series in it.
//! - [`fake_manager`]: a fake manager gRPC service in process (records
//!   registrations, keepalives and lists; answers what the test sets).
//! - [`http`]: one JSON request to a REST API.
//! - [`db`]: scratch databases (SQLite always; PostgreSQL and MySQL/MariaDB
//!   from `DARTER_TEST_*_URL`, created per test and dropped afterwards).
//! - [`pki`]: a CA of the kit's own (member certificates as files, and the
//!   stranger's CA in attack tests) and join tokens from a real manager.
//! - [`caller`]: a gRPC caller that presents what a test says (nothing,
//!   no certificate, any certificate) and accepts any server, for tests of
//!   who a server refuses.
//! - [`net`]: an address nothing listens on (for dead-peer tests).
//! - [`process`]: [`process::ChildGuard`] (kill-on-drop children) and
//!   [`process::signal`].
//! - [`size`]: human byte sizes (`64MiB`) for command-line options.

pub mod caller;
pub mod cluster;
pub mod containerd;
pub mod data;
pub mod db;
pub mod dfdaemon;
pub mod eventually;
pub mod fake_manager;
pub mod http;
pub mod manager;
pub mod metrics;
pub mod net;
pub mod oci;
pub mod origin;
pub mod pki;
pub mod process;
pub mod registry;
pub mod service;
pub mod size;
pub mod tool;

pub use data::{random_bytes, sha256_file, sha256_hex, write_random_file};
pub use eventually::{eventually, eventually_some};
