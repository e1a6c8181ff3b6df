//! Darter's real processes placed on the benchmark's network: the manager
//! and the scheduler on the hub, the origin server and the seed peer on the
//! origin's node (their upload together is the origin's link, U), one
//! dfdaemon per peer node. Peers are restarted on empty data directories
//! before every run; the manager, the scheduler and the seed stay up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::netns::{LinkRates, Node, Topology};
use darter_common::tls::Role;
use testkit::cluster::{SchedulerProcess, Trust};
use testkit::dfdaemon::{DaemonOptions, DaemonProcess};
use testkit::eventually::wait_until;
use testkit::manager::{ManagerProcess, random_password};
use testkit::origin::Origin;

/// Ports every dfdaemon uses on its own address.
const UPLOAD_PORT: u16 = 4000;
const METRICS_PORT: u16 = 4002;
const PIECE_PORT: u16 = 4003;
/// The origin server's port on the origin node.
const ORIGIN_PORT: u16 = 8080;
/// How long the cluster may take to wire itself through the manager.
const WIRING_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the binaries are and how daemons are tuned.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Directory holding `manager`, `scheduler`, `dfdaemon`, `dfget`.
    pub bin_dir: PathBuf,
    /// State and logs.
    pub dir: PathBuf,
    /// Extra environment for every dfdaemon (e.g. `DFDAEMON__P2P__CONCURRENCY`).
    pub daemon_env: Vec<(String, String)>,
    /// Extra environment for the scheduler.
    pub scheduler_env: Vec<(String, String)>,
    /// Nominal rates: in loopback mode the daemons and the origin enforce them.
    pub rates: LinkRates,
    /// Control connections in plaintext (the baseline the cost of mutual TLS
    /// is measured against); otherwise members enroll with join tokens.
    pub plaintext: bool,
}

/// The running Darter side of the benchmark.
pub struct SwarmCluster {
    /// The origin server (on the origin node).
    pub origin: Origin,
    /// The manager.
    pub manager: ManagerProcess,
    /// The scheduler.
    pub scheduler: SchedulerProcess,
    /// The seed peer (on the origin node).
    pub seed: DaemonProcess,
    /// One daemon per peer node (`None` until started).
    pub peers: Vec<Option<DaemonProcess>>,
    config: ClusterConfig,
    peer_nodes: Vec<Node>,
    origin_node: Node,
    shaped: bool,
    trust: Trust,
}

impl SwarmCluster {
    /// Starts the origin, the manager, the scheduler and the seed, and waits
    /// until the scheduler knows the seed.
    pub async fn start(t: &Topology, config: ClusterConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        let listener = t.origin.bind(ORIGIN_PORT).context("origin listener")?;
        let origin = Origin::from_listener(listener).await?;
        let manager_env: Vec<(String, String)> =
            if config.plaintext { vec![("MANAGER__TLS__MODE".into(), "plaintext".into())] } else { Vec::new() };
        let manager = ManagerProcess::start_on(
            &config.bin_dir.join("manager"),
            &config.dir.join("manager"),
            t.hub.ip,
            &manager_env,
            &random_password(),
        )
        .await?;
        let trust = if config.plaintext { Trust::Plaintext } else { Trust::joins(&manager).await? };
        let mut scheduler_env = trust.env("SCHEDULER", Role::Scheduler, "scheduler", &config.dir.join("scheduler"));
        scheduler_env.extend([
            ("SCHEDULER__MANAGER__KEEPALIVE_INTERVAL".to_string(), "500ms".to_string()),
            ("SCHEDULER__MANAGER__REFRESH_INTERVAL".to_string(), "500ms".to_string()),
        ]);
        scheduler_env.extend(config.scheduler_env.iter().cloned());
        let scheduler = SchedulerProcess::start_on(
            &config.bin_dir.join("scheduler"),
            &config.dir.join("scheduler"),
            t.hub.ip,
            &["--manager".to_string(), manager.grpc_addr.to_string()],
            &scheduler_env,
        )
        .await?;
        let shaped = t.shaped();
        let seed_options =
            daemon_options(&config, &manager, &trust, &t.origin, "seed", shaped, config.rates.origin_up_bps);
        let mut seed_options = seed_options;
        seed_options.args.push("--seed".into());
        let seed = DaemonProcess::start(seed_options).await?;
        let learned = wait_until("the seed to announce itself to the scheduler", WIRING_TIMEOUT, || async {
            scheduler.metric("scheduler_seed_peers_announced").await.is_some_and(|n| n >= 1.0)
        })
        .await;
        learned.with_context(|| format!("seed log:\n{}", seed.log_tail(20)))?;
        Ok(Self {
            origin,
            manager,
            scheduler,
            seed,
            peers: t.peers.iter().map(|_| None).collect(),
            config,
            peer_nodes: t.peers.clone(),
            origin_node: t.origin.clone(),
            shaped,
            trust,
        })
    }

    /// The URL of `path` on the origin.
    pub fn url(&self, path: &str) -> String {
        self.origin.url(path)
    }

    /// Kills peers `0..n` and starts them again on empty data directories
    /// (so nothing is cached), and waits until each serves.
    pub async fn fresh_peers(&mut self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            if let Some(mut p) = self.peers[i].take() {
                p.kill();
            }
            let name = format!("peer-{i}");
            let dir = self.config.dir.join(&name);
            let _ = std::fs::remove_dir_all(&dir);
            let options = daemon_options(
                &self.config,
                &self.manager,
                &self.trust,
                &self.peer_nodes[i],
                &name,
                self.shaped,
                self.config.rates.peer_up_bps,
            );
            self.peers[i] = Some(DaemonProcess::start(options).await?);
        }
        // Each peer has asked the manager for its scheduler before serving;
        // make sure they can reach their metrics (their node is up).
        for i in 0..n {
            let addr = self.metrics_addr(i);
            wait_until("a peer's metrics", Duration::from_secs(10), || async move {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            })
            .await?;
        }
        Ok(())
    }

    /// Kills every peer daemon.
    pub fn stop_peers(&mut self) {
        for p in self.peers.iter_mut().filter_map(Option::take) {
            drop(p);
        }
    }

    /// Peer `i`'s metrics address.
    pub fn metrics_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.peer_nodes[i].ip, METRICS_PORT)
    }

    /// The `dfget` binary.
    pub fn dfget(&self) -> PathBuf {
        self.config.bin_dir.join("dfget")
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The origin's node (the origin server and the seed peer).
    pub fn origin_node(&self) -> &Node {
        &self.origin_node
    }

    /// Peer `i`'s node.
    pub fn peer_node(&self, i: usize) -> &Node {
        &self.peer_nodes[i]
    }

    /// Peer `i`'s download socket (its daemon must be running).
    pub fn socket(&self, i: usize) -> PathBuf {
        self.config.dir.join(format!("peer-{i}")).join("dfdaemon.sock")
    }

    /// Bytes per second the origin paces each response at: only in loopback
    /// mode, where the kernel shapes nothing.
    pub fn origin_pace(&self) -> Option<u64> {
        (!self.shaped).then_some(self.config.rates.origin_up_bps / 8)
    }
}

/// Options of a dfdaemon on `node`: fixed ports on its address, wired
/// through the manager; in loopback mode its uploads are limited to `up_bps`.
fn daemon_options(
    config: &ClusterConfig,
    manager: &ManagerProcess,
    trust: &Trust,
    node: &Node,
    name: &str,
    shaped: bool,
    up_bps: u64,
) -> DaemonOptions {
    let mut d = DaemonOptions::new(config.bin_dir.join("dfdaemon"), config.dir.join(name));
    let role = if name == "seed" { Role::SeedPeer } else { Role::Peer };
    d.tls = trust.env("DFDAEMON", role, name, &d.dir);
    d.ip = node.ip;
    d.netns = node.ns.clone();
    d.upload_port = UPLOAD_PORT;
    d.piece_port = PIECE_PORT;
    d.metrics_port = METRICS_PORT;
    d.args = vec!["--manager".into(), manager.grpc_addr.to_string()];
    d.env = vec![
        ("DFDAEMON__HOST__HOSTNAME".into(), name.into()),
        ("DFDAEMON__MANAGER__REFRESH_INTERVAL".into(), "5s".into()),
        ("DFDAEMON__MANAGER__KEEPALIVE_INTERVAL".into(), "500ms".into()),
    ];
    if !shaped {
        d.env.push(("DFDAEMON__UPLOAD__RATE_LIMIT".into(), format!("{}", up_bps / 8)));
    }
    d.env.extend(config.daemon_env.iter().cloned());
    d.log_level = "info".into();
    d
}

/// Reads one sample of `metric` (with its labels, e.g.
/// `dfdaemon_download_bytes_total{source="peer"}`) from a `/metrics` page.
pub async fn read_metric(addr: SocketAddr, metric: &str) -> Option<f64> {
    read_metrics(addr, &[metric]).await?.pop()?
}

/// Several metrics from one read of a `/metrics` page, in the order asked;
/// `None` when the page cannot be read.
pub async fn read_metrics(addr: SocketAddr, metrics: &[&str]) -> Option<Vec<Option<f64>>> {
    let text = testkit::metrics::scrape(addr).await.ok()?;
    Some(metrics.iter().map(|m| testkit::metrics::value(&text, m)).collect())
}
