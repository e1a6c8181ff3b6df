//! A local Darter cluster of real processes on loopback: a scheduler, an
//! optional seed peer and N peers, each with its own directory, ports and
//! log. Everything is killed when dropped. Used by the end-to-end tests and
//! the sandbox.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::dfdaemon::{DaemonOptions, DaemonProcess, tail};
use crate::process::{ChildGuard, wait_for};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A scheduler process.
#[derive(Debug)]
pub struct SchedulerProcess {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its log file.
    pub log_path: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<ChildGuard>,
}

impl SchedulerProcess {
    /// Starts `bin` on a free port with the given seed peers (their upload
    /// gRPC addresses) and waits until it accepts connections.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        seed_peers: &[SocketAddr],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut args = vec!["--grpc-addr".into(), addr.to_string(), "--metrics-addr".into(), "127.0.0.1:0".into()];
        for s in seed_peers {
            args.push("--seed-peer".into());
            args.push(s.to_string());
        }
        let mut s = Self {
            addr,
            log_path: dir.join("scheduler.log"),
            bin: bin.to_path_buf(),
            args,
            env: env.to_vec(),
            child: None,
        };
        s.spawn().await?;
        Ok(s)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::options().create(true).append(true).open(&self.log_path)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let mut child = ChildGuard::new(child);
        let addr = self.addr;
        let ready = wait_for("the scheduler port", Duration::from_secs(20), || TcpStream::connect(addr).is_ok()).await;
        if ready.is_err() || child.has_exited() {
            bail!("scheduler did not start\n--- scheduler log tail ---\n{}", tail(&self.log_path, 20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Starts it again on the same address (its memory is gone).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
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
        }
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The scheduler.
    pub scheduler: SchedulerProcess,
    /// The seed peer.
    pub seed: Option<DaemonProcess>,
    /// The peers.
    pub peers: Vec<DaemonProcess>,
    options: ClusterOptions,
    seed_upload: u16,
}

impl Cluster {
    /// Starts the scheduler, the seed and the peers.
    pub async fn start(o: &ClusterOptions) -> anyhow::Result<Self> {
        let seed_upload = free_port();
        let seed_addrs: Vec<SocketAddr> = if o.seed { vec![([127, 0, 0, 1], seed_upload).into()] } else { Vec::new() };
        let scheduler =
            SchedulerProcess::start(&o.scheduler_bin, &o.dir.join("scheduler"), &seed_addrs, &o.scheduler_env).await?;
        let mut cluster = Self { scheduler, seed: None, peers: Vec::new(), options: o.clone(), seed_upload };
        if o.seed {
            cluster.seed = Some(DaemonProcess::start(cluster.daemon_options("seed", true, &[])).await?);
        }
        for _ in 0..o.peers {
            cluster.add_peer(&[]).await?;
        }
        Ok(cluster)
    }

    fn daemon_options(&self, name: &str, seed: bool, env: &[(&str, &str)]) -> DaemonOptions {
        let o = &self.options;
        let mut d = DaemonOptions::new(&o.dfdaemon_bin, o.dir.join(name));
        d.env = o.daemon_env.clone();
        d.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        d.args = vec!["--scheduler".into(), self.scheduler.addr.to_string()];
        if seed {
            d.args.push("--seed".into());
            d.upload_port = self.seed_upload;
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
