//! Darter's benchmarks: the library behind the `darter-bench` binary.
//!
//! How performance is measured (ratios within one run, against a bound or a
//! baseline) and the latest figures are in `docs/benchmarks.md`. Every
//! benchmark starts the real binaries through the test kit's launchers
//! (`testkit::{origin, dfdaemon, cluster, manager, db, metrics, process}`,
//! the `darter-tests` crate); this crate only adds the load, the baselines
//! and the reports.
//!
//! Layout:
//! - `src/bin/darter-bench/`: the binary: parses arguments and hands over
//!   (`main.rs`; `swarm.rs` holds the swarm's flags).
//! - Single node: [`backsource`] (dfget back-to-source vs `curl` from the
//!   same origin), [`mirror`] (a blob through dfdaemon's registry mirror,
//!   cold and warm, vs straight from the registry), [`p2p`] (one parent and
//!   one child on loopback: throughput and CPU per GiB of both, against
//!   curl); with [`scratch`] (the scratch directory and random file each run
//!   serves) and [`report`] (medians, the Markdown table, the JSON document).
//! - [`manager`]: the manager's `ListSchedulers` and REST API under a closed
//!   loop, on SQLite, PostgreSQL or MySQL.
//! - [`swarm`]: N peers in network namespaces on shaped links, Darter
//!   against the fluid bound, curl and BitTorrent, with a PNG chart.
//! - `tests/`: the binary end to end (`cli.rs`), the BitTorrent baseline and
//!   Darter in namespaces (both need root; they skip outside CI).

pub mod backsource;
pub mod manager;
pub mod mirror;
pub mod p2p;
pub mod report;
pub mod scratch;
pub mod swarm;
