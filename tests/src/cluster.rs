//! A local Darter cluster of real processes on loopback: a manager (always
//! with a seed peer), a scheduler, an optional seed peer and N peers, each
//! with its own directory, ports the kernel picked, and log. With a manager
//! the scheduler and the seed register with it and the daemons find the
//! scheduler through it only; without one (no seed) the daemons are given
//! the scheduler's address. Everything is killed when dropped. Used by the
//! end-to-end tests, the sandbox and the benchmarks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::dfdaemon::{DaemonOptions, DaemonProcess};
use crate::eventually::{START_DEADLINE, wait_until};
use crate::manager::ManagerProcess;
use crate::pki::{Join, TestCa};

use crate::service::{ServiceProcess, ServiceSpec};
use darter_common::tls::Role;

/// A scheduler process.
#[derive(Debug)]
pub struct SchedulerProcess {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its metrics and health address.
    pub metrics_addr: SocketAddr,
    /// Its log file.
    pub log_path: PathBuf,
    process: ServiceProcess,
}

impl SchedulerProcess {
    /// Starts `bin` with the given seed peers (their upload gRPC addresses)
    /// and waits until it is ready.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        seed_peers: &[SocketAddr],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut args = Vec::new();
        for s in seed_peers {
            args.push("--seed-peer".into());
            args.push(s.to_string());
        }
        Self::start_with_args(bin, dir, &args, env).await
    }

    /// Starts `bin` with extra flags (e.g. `--manager HOST:PORT`) and waits
    /// until it is ready.
    pub async fn start_with_args(
        bin: &Path,
        dir: &Path,
        extra_args: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        Self::start_on(bin, dir, std::net::Ipv4Addr::LOCALHOST.into(), extra_args, env).await
    }

    /// Like [`SchedulerProcess::start_with_args`], listening on `ip`.
    pub async fn start_on(
        bin: &Path,
        dir: &Path,
        ip: std::net::IpAddr,
        extra_args: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut spec = ServiceSpec::new("scheduler", bin, dir).listener("grpc", "--grpc-addr", ip).listener(
            "metrics",
            "--metrics-addr",
            ip,
        );
        spec.args = extra_args.to_vec();
        spec.env = env.to_vec();
        let process = ServiceProcess::start(spec).await?;
        Ok(Self {
            addr: process.addr("grpc"),
            metrics_addr: process.addr("metrics"),
            log_path: process.log_path.clone(),
            process,
        })
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same addresses (its memory is gone).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart().await
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }

    /// The value of the metric `name` (a line `name value` of `/metrics`),
    /// `None` when it cannot be read.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        crate::metrics::value(&crate::metrics::scrape(self.metrics_addr).await.ok()?, name)
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Directory for every process's state and log.
    pub dir: PathBuf,
    /// The `scheduler` binary.
    pub scheduler_bin: PathBuf,
    /// The `dfdaemon` binary.
    pub dfdaemon_bin: PathBuf,
    /// Normal peers.
    pub peers: usize,
    /// Whether to start a seed peer.
    pub seed: bool,
    /// Extra env for every dfdaemon.
    pub daemon_env: Vec<(String, String)>,
    /// Extra env for the scheduler.
    pub scheduler_env: Vec<(String, String)>,
    /// The `manager` binary; `Some`: wire the cluster through a manager
    /// (see [`ClusterOptions::with_manager`]).
    pub manager_bin: Option<PathBuf>,
    /// Extra env for the manager (e.g. `MANAGER__KEEPALIVE_GRACE=2s`).
    pub manager_env: Vec<(String, String)>,
    /// Root password the manager is started with.
    pub root_password: String,
    /// Every member in plaintext (development) mode, the manager too:
    /// nothing is authenticated, as before mutual TLS.
    pub plaintext: bool,
    /// Join a manager another cluster runs instead of starting one
    /// (multi-cluster: this cluster is "cluster B" of that manager).
    pub external_manager: Option<ExternalManager>,
}

/// A manager this cluster joins but does not run, and this cluster's join
/// tokens from it (each names the cluster its members join).
#[derive(Debug, Clone)]
pub struct ExternalManager {
    /// Its gRPC address.
    pub grpc_addr: SocketAddr,
    /// For the scheduler.
    pub scheduler: Join,
    /// For the seed peer.
    pub seed_peer: Join,
    /// For peers.
    pub peer: Join,
}

impl ExternalManager {
    /// `manager`'s address and new join tokens of its cluster `cluster_id`.
    pub async fn of(manager: &ManagerProcess, cluster_id: i64) -> anyhow::Result<Self> {
        Ok(Self {
            grpc_addr: manager.grpc_addr,
            scheduler: manager.join("scheduler", Some(cluster_id)).await?,
            seed_peer: manager.join("seed_peer", Some(cluster_id)).await?,
            peer: manager.join("peer", Some(cluster_id)).await?,
        })
    }
}

impl ClusterOptions {
    /// `peers` peers and a seed, binaries from `bin_dir`.
    pub fn new(dir: &Path, bin_dir: &Path, peers: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            scheduler_bin: bin_dir.join("scheduler"),
            dfdaemon_bin: bin_dir.join("dfdaemon"),
            peers,
            seed: true,
            daemon_env: vec![("DFDAEMON__SCHEDULER__ANNOUNCE_INTERVAL".into(), "1s".into())],
            scheduler_env: Vec::new(),
            manager_bin: None,
            manager_env: Vec::new(),
            root_password: "darter-test-root".into(),
            plaintext: false,
            external_manager: None,
        }
    }

    /// Starts a manager (next to the other binaries) first: the scheduler
    /// (`--manager`) and the seed (`--manager --seed`) register with it, and
    /// every daemon finds the scheduler through it only. Intervals are short
    /// so the cluster wires itself in about a second.
    pub fn with_manager(mut self) -> Self {
        self.manager_bin = Some(self.scheduler_bin.with_file_name("manager"));
        self.scheduler_env.extend([
            ("SCHEDULER__MANAGER__KEEPALIVE_INTERVAL".into(), "500ms".into()),
            ("SCHEDULER__MANAGER__REFRESH_INTERVAL".into(), "500ms".into()),
        ]);
        self.daemon_env.extend([
            ("DFDAEMON__MANAGER__KEEPALIVE_INTERVAL".into(), "500ms".into()),
            ("DFDAEMON__MANAGER__REFRESH_INTERVAL".into(), "5s".into()),
        ]);
        self
    }
}

/// Where a cluster's members get their certificates: join tokens from its
/// manager (enrollment), or files from the kit's CA (a cluster without a
/// manager, as cert-manager would deliver them).
#[derive(Debug)]
pub enum Trust {
    /// Enrollment with the manager.
    Joins {
        /// For the scheduler.
        scheduler: Join,
        /// For the seed peer.
        seed_peer: Join,
        /// For peers.
        peer: Join,
    },
    /// Files from the kit's CA (boxed: a CA is large next to the other variants).
    Files(Box<TestCa>),
    /// Plaintext (development) mode: no TLS, nothing authenticated (the
    /// benchmarks' baseline).
    Plaintext,
}

impl Trust {
    /// Join tokens from `manager` for each role.
    pub async fn joins(manager: &ManagerProcess) -> anyhow::Result<Self> {
        Ok(Trust::Joins {
            scheduler: manager.join("scheduler", None).await?,
            seed_peer: manager.join("seed_peer", None).await?,
            peer: manager.join("peer", None).await?,
        })
    }

    /// The environment (`SCHEDULER` or `DFDAEMON` prefix) that gives the
    /// member named `name` (its directory `dir`) its certificate as `role`.
    pub fn env(&self, prefix: &str, role: Role, name: &str, dir: &Path) -> Vec<(String, String)> {
        let mut env = match self {
            Trust::Joins { scheduler, seed_peer, peer } => match role {
                Role::Scheduler => scheduler.env(prefix),
                Role::SeedPeer => seed_peer.env(prefix),
                _ => peer.env(prefix),
            },
            Trust::Files(ca) => ca.write(dir, &crate::pki::identity(role, name)).env(prefix),
            Trust::Plaintext => crate::pki::plaintext_env(prefix),
        };
        // Each member under its own name: the name its certificate carries.
        env.push((format!("{prefix}__HOST__HOSTNAME"), name.to_owned()));
        env
    }
}

/// Starts the cluster's scheduler with `trust`'s certificate, registering
/// with the manager at `manager_addr` when there is one.
async fn start_scheduler(
    o: &ClusterOptions,
    trust: &Trust,
    manager_addr: Option<SocketAddr>,
) -> anyhow::Result<SchedulerProcess> {
    let dir = o.dir.join("scheduler");
    let args: Vec<String> = manager_addr.iter().flat_map(|a| ["--manager".into(), a.to_string()]).collect();
    let mut env = trust.env("SCHEDULER", Role::Scheduler, "scheduler", &dir);
    env.extend(o.scheduler_env.iter().cloned());
    SchedulerProcess::start_with_args(&o.scheduler_bin, &dir, &args, &env).await
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The manager, when the cluster runs one.
    pub manager: Option<ManagerProcess>,
    /// The manager it is wired through: its own, or an external one.
    pub manager_addr: Option<SocketAddr>,
    /// The scheduler.
    pub scheduler: SchedulerProcess,
    /// The seed peer.
    pub seed: Option<DaemonProcess>,
    /// The peers.
    pub peers: Vec<DaemonProcess>,
    /// Where its members' certificates come from.
    pub trust: Trust,
    options: ClusterOptions,
}

impl Cluster {
    /// Starts the manager (if asked for, and always with a seed peer), the
    /// scheduler, the seed and the peers.
    ///
    /// A seed peer joins through the manager, as in production: a scheduler
    /// given seed addresses on its command line would need the seed's port
    /// before the seed has bound it, and the kit never picks ports.
    pub async fn start(o: &ClusterOptions) -> anyhow::Result<Self> {
        if let Some(external) = &o.external_manager {
            return Self::start_joining(o, external).await;
        }
        let o = if o.seed && o.manager_bin.is_none() { o.clone().with_manager() } else { o.clone() };
        let manager = match &o.manager_bin {
            Some(bin) => {
                let mut env = o.manager_env.clone();
                if o.plaintext {
                    env.push(("MANAGER__TLS__MODE".into(), "plaintext".into()));
                }
                Some(ManagerProcess::start(bin, &o.dir.join("manager"), &env, &o.root_password).await?)
            }
            None => None,
        };
        let trust = match &manager {
            _ if o.plaintext => Trust::Plaintext,
            Some(m) => Trust::joins(m).await?,
            None => Trust::Files(Box::default()),
        };
        let manager_addr = manager.as_ref().map(|m| m.grpc_addr);
        let scheduler = start_scheduler(&o, &trust, manager_addr).await?;
        let mut cluster =
            Self { manager, manager_addr, scheduler, seed: None, peers: Vec::new(), trust, options: o.clone() };
        if let Some(m) = &cluster.manager {
            let port = u32::from(cluster.scheduler.addr.port());
            let registered = wait_until("the manager to list the scheduler", START_DEADLINE, || async {
                m.list_schedulers().await.is_ok_and(|r| r.schedulers.iter().any(|s| s.port == port))
            })
            .await;
            registered.map_err(|e| cluster.wiring_error(e))?;
        }
        cluster.start_members().await?;
        Ok(cluster)
    }

    /// Starts a cluster whose scheduler and seed join `external`'s manager
    /// with its tokens (the manager already runs, for another cluster).
    async fn start_joining(o: &ClusterOptions, external: &ExternalManager) -> anyhow::Result<Self> {
        let o = o.clone().with_manager();
        let trust = Trust::Joins {
            scheduler: external.scheduler.clone(),
            seed_peer: external.seed_peer.clone(),
            peer: external.peer.clone(),
        };
        let scheduler = start_scheduler(&o, &trust, Some(external.grpc_addr)).await?;
        let mut cluster = Self {
            manager: None,
            manager_addr: Some(external.grpc_addr),
            scheduler,
            seed: None,
            peers: Vec::new(),
            trust,
            options: o,
        };
        cluster.start_members().await?;
        Ok(cluster)
    }

    /// Starts the seed (waiting until the scheduler learned it) and the peers.
    async fn start_members(&mut self) -> anyhow::Result<()> {
        if self.options.seed {
            self.seed = Some(DaemonProcess::start(self.daemon_options("seed", true, &[])).await?);
            let scheduler = &self.scheduler;
            let learned = wait_until("the seed to announce itself to the scheduler", START_DEADLINE, || async {
                scheduler.metric("scheduler_seed_peers_announced").await.is_some_and(|n| n >= 1.0)
            })
            .await;
            learned.map_err(|e| self.wiring_error(e))?;
        }
        for _ in 0..self.options.peers {
            self.add_peer(&[]).await?;
        }
        Ok(())
    }

    /// The last lines of every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Some(m) = &self.manager {
            s.push_str(&format!("--- manager ---\n{}\n", m.log_tail(20)));
        }
        s.push_str(&format!("--- scheduler ---\n{}\n", self.scheduler.log_tail(30)));
        for p in self.seed.iter().chain(&self.peers) {
            s.push_str(&format!("--- {} ---\n{}\n", p.log_path.display(), p.log_tail(15)));
        }
        s
    }

    fn wiring_error(&self, e: anyhow::Error) -> anyhow::Error {
        let manager = self.manager.as_ref().map(|m| m.log_tail(20)).unwrap_or_default();
        let seed = self.seed.as_ref().map(|s| s.log_tail(20)).unwrap_or_default();
        anyhow::anyhow!(
            "{e}\n--- manager ---\n{manager}\n--- scheduler ---\n{}\n--- seed ---\n{seed}",
            self.scheduler.log_tail(20)
        )
    }

    /// Options for one more daemon named `name` (its directory under the cluster's).
    pub fn daemon_options(&self, name: &str, seed: bool, env: &[(&str, &str)]) -> DaemonOptions {
        let o = &self.options;
        let mut d = DaemonOptions::new(&o.dfdaemon_bin, o.dir.join(name));
        let role = if seed { Role::SeedPeer } else { Role::Peer };
        d.tls = self.trust.env("DFDAEMON", role, name, &d.dir);
        d.env = o.daemon_env.clone();
        d.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        d.args = match self.manager_addr {
            Some(addr) => vec!["--manager".into(), addr.to_string()],
            None => vec!["--scheduler".into(), self.scheduler.addr.to_string()],
        };
        if seed {
            d.args.push("--seed".into());
        }
        d
    }

    /// Starts one more peer with extra environment; returns its index.
    pub async fn add_peer(&mut self, env: &[(&str, &str)]) -> anyhow::Result<usize> {
        let i = self.peers.len();
        let peer = DaemonProcess::start(self.daemon_options(&format!("peer-{i}"), false, env)).await?;
        self.peers.push(peer);
        Ok(i)
    }
}
