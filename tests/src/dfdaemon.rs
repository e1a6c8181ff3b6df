//! A real `dfdaemon` process on loopback: its own data directory, socket and
//! log, killed with SIGKILL when dropped. Shared by the integration tests, the
//! benchmarks and the sandbox.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{ChildGuard, wait_for};

/// How long a dfdaemon may take to accept connections on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a daemon.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The `dfdaemon` binary.
    pub bin: PathBuf,
    /// Directory for its data (`data/`), socket and log.
    pub dir: PathBuf,
    /// Piece server port (0: ephemeral).
    pub piece_port: u16,
    /// Metrics port (0: ephemeral).
    pub metrics_port: u16,
    /// Upload gRPC port (0: ephemeral; a seed peer needs a known one).
    pub upload_port: u16,
    /// Registry mirror / proxy port; `None` (the default) runs without the proxy.
    pub proxy_port: Option<u16>,
    /// More flags (e.g. `--scheduler 127.0.0.1:8002`, `--seed`).
    pub args: Vec<String>,
    /// Extra environment (e.g. `DFDAEMON__BACK_TO_SOURCE__CONCURRENCY`).
    pub env: Vec<(String, String)>,
    /// `--log-level`.
    pub log_level: String,
    /// Address its listeners bind (and it advertises); default 127.0.0.1.
    pub ip: std::net::IpAddr,
    /// Network namespace to run it in (`ip netns exec`); default none.
    pub netns: Option<String>,
}

impl DaemonOptions {
    /// Defaults: ephemeral ports, `info` logs.
    pub fn new(bin: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            dir: dir.into(),
            piece_port: 0,
            metrics_port: 0,
            upload_port: 0,
            proxy_port: None,
            args: Vec::new(),
            env: Vec::new(),
            log_level: "info".into(),
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            netns: None,
        }
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct DaemonProcess {
    /// Options it was started with.
    pub options: DaemonOptions,
    /// Its download socket.
    pub socket: PathBuf,
    /// Its log file (stdout and stderr).
    pub log_path: PathBuf,
    child: Option<Mutex<ChildGuard>>,
}

impl DaemonProcess {
    /// Starts a daemon and waits until its socket accepts connections.
    pub async fn start(options: DaemonOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.dir).with_context(|| format!("create {}", options.dir.display()))?;
        let mut d = Self {
            socket: options.dir.join("dfdaemon.sock"),
            log_path: options.dir.join("dfdaemon.log"),
            options,
            child: None,
        };
        d.spawn().await?;
        Ok(d)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let o = &self.options;
        let log = File::options().create(true).append(true).open(&self.log_path)?;
        let mut command = match &o.netns {
            None => Command::new(&o.bin),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&o.bin);
                c
            }
        };
        let ip = o.ip;
        let child = command
            .arg("--data-dir")
            .arg(o.dir.join("data"))
            .arg("--download-socket")
            .arg(&self.socket)
            .args(["--upload-addr", &SocketAddr::new(ip, o.upload_port).to_string()])
            .args(["--piece-addr", &SocketAddr::new(ip, o.piece_port).to_string()])
            .args(["--metrics-addr", &SocketAddr::new(ip, o.metrics_port).to_string()])
            .args(match o.proxy_port {
                Some(port) => vec!["--proxy-addr".to_owned(), SocketAddr::new(ip, port).to_string()],
                None => vec!["--no-proxy".to_owned()],
            })
            .args(["--log-level", &o.log_level])
            .args(&o.args)
            .envs(o.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", o.bin.display()))?;
        let child = Mutex::new(ChildGuard::new(child));
        let socket = self.socket.clone();
        let ready = wait_for("the dfdaemon socket", START_TIMEOUT, || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok() || child.lock().unwrap().has_exited()
        })
        .await;
        let exited = child.lock().unwrap().has_exited();
        if let Err(e) =
            ready.and_then(|()| if exited { Err(anyhow::anyhow!("dfdaemon exited at start")) } else { Ok(()) })
        {
            bail!("{e}\n--- dfdaemon log tail ---\n{}", self.log_tail(20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.lock().unwrap().id())
    }

    /// Kills the daemon with SIGKILL (no goodbye).
    pub fn kill(&mut self) {
        if let Some(c) = self.child.take() {
            c.into_inner().unwrap().kill();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for a graceful exit.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child.take().context("daemon is not running")?;
        let mut guard = child.into_inner().unwrap();
        let status = Command::new("kill").args(["-TERM", &guard.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", guard.id());
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = guard.0.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                bail!("dfdaemon did not exit within {timeout:?} of SIGTERM\n{}", self.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills and starts it again on the same directory and ports.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A Darter binary next to the running executable (how `cargo build --bins`
/// lays them out), with a message that says how to build it when missing.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locate own executable")?;
    let mut dir = exe.parent().context("executable has no directory")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{name} not found at {}: build it with `cargo build --release --workspace --bins`", path.display());
    }
    Ok(path)
}
