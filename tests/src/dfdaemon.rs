//! A real `dfdaemon` process on loopback: its own data directory, socket and
//! log, listeners on ports the kernel picks, killed with SIGKILL when dropped. Shared by the integration tests, the
//! benchmarks and the sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

pub use crate::service::tail;
use crate::service::{ServiceProcess, ServiceSpec};

/// How to start a daemon.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The `dfdaemon` binary.
    pub bin: PathBuf,
    /// Directory for its data (`data/`), socket and log.
    pub dir: PathBuf,
    /// Piece server port (0, the default: the kernel picks; read
    /// [`DaemonProcess::piece_addr`]). A fixed port only where nothing else
    /// can take it (a network namespace of the daemon's own).
    pub piece_port: u16,
    /// Metrics port (0: the kernel picks).
    pub metrics_port: u16,
    /// Upload gRPC port (0: the kernel picks).
    pub upload_port: u16,
    /// Registry mirror / proxy port (`Some(0)`: the kernel picks); `None`
    /// (the default) runs without the proxy.
    pub proxy_port: Option<u16>,
    /// More flags (e.g. `--scheduler 127.0.0.1:8002`, `--seed`).
    pub args: Vec<String>,
    /// The environment that gives it its certificate (a join token or files:
    /// see [`crate::pki`]). Default: plaintext (development) mode, for a
    /// daemon alone or against an in-process fake; a [`crate::cluster::Cluster`]
    /// gives its members real ones.
    pub tls: Vec<(String, String)>,
    /// Extra environment (e.g. `DFDAEMON__BACK_TO_SOURCE__CONCURRENCY`),
    /// applied after `tls`.
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
            tls: crate::pki::plaintext_env("DFDAEMON"),
            env: Vec::new(),
            log_level: "info".into(),
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            netns: None,
        }
    }
}

/// What a `dfget` run did.
#[derive(Debug)]
pub struct DfgetRun {
    /// Its exit code (-1 when killed by a signal).
    pub code: i32,
    /// What it wrote to stderr.
    pub stderr: String,
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
    process: ServiceProcess,
}

impl DaemonProcess {
    /// Starts a daemon and waits until it is ready (addresses published,
    /// `/healthz` 200).
    pub async fn start(options: DaemonOptions) -> anyhow::Result<Self> {
        let o = &options;
        let socket = o.dir.join("dfdaemon.sock");
        let at = |port: u16| SocketAddr::new(o.ip, port);
        let mut spec = ServiceSpec::new("dfdaemon", &o.bin, &o.dir);
        spec.listeners = vec![
            ("upload", "--upload-grpc-addr", at(o.upload_port)),
            ("piece", "--piece-addr", at(o.piece_port)),
            ("metrics", "--metrics-addr", at(o.metrics_port)),
        ];
        spec.listeners.extend(o.proxy_port.map(|p| ("proxy", "--proxy-addr", at(p))));
        spec.args = vec!["--data-dir".into(), o.dir.join("data").display().to_string()];
        spec.args.extend(["--download-socket".into(), socket.display().to_string()]);
        if o.proxy_port.is_none() {
            spec.args.push("--no-proxy".into());
        }
        spec.args.extend(["--log-level".into(), o.log_level.clone()]);
        spec.args.extend(o.args.iter().cloned());
        spec.env = o.tls.iter().chain(&o.env).cloned().collect();
        spec.netns = o.netns.clone();
        let process = ServiceProcess::start(spec).await?;
        Ok(Self { socket, log_path: process.log_path.clone(), options, process })
    }

    /// `dfget URL -O out --socket <its socket> --no-progress --verbose ARGS`,
    /// with the `dfget` next to this daemon's binary.
    pub async fn dfget(&self, url: &str, out: &std::path::Path, args: &[&str]) -> DfgetRun {
        let dfget = self.options.bin.with_file_name("dfget");
        let output = tokio::process::Command::new(&dfget)
            .arg(url)
            .arg("-O")
            .arg(out)
            .arg("--socket")
            .arg(&self.socket)
            .args(["--no-progress", "--verbose"])
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {}: {e}", dfget.display()));
        DfgetRun {
            code: output.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Its upload gRPC address.
    pub fn upload_addr(&self) -> SocketAddr {
        self.process.addr("upload")
    }

    /// Its piece server's address.
    pub fn piece_addr(&self) -> SocketAddr {
        self.process.addr("piece")
    }

    /// Its metrics and health address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.process.addr("metrics")
    }

    /// Its registry mirror and proxy address, when started with one.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.process.address("proxy").is_some().then(|| self.process.addr("proxy"))
    }

    /// The address of its `proxy.registry_mirrors` listener for `registry`,
    /// when it has one.
    pub fn registry_mirror_addr(&self, registry: &str) -> Option<SocketAddr> {
        // Its name in the ready file (dfdaemon::REGISTRY_MIRROR_PREFIX).
        let name = format!("registry_mirror:{registry}");
        self.process.address(&name).is_some().then(|| self.process.addr(&name))
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the daemon with SIGKILL (no goodbye).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends SIGTERM and waits up to `timeout` for a graceful exit.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.process.terminate(timeout).await
    }

    /// Kills and starts it again on the same directory and addresses.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart().await
    }

    /// The whole log.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }
}

/// The directory of Darter's binaries (next to the running test, as `cargo
/// build --workspace --bins` lays them out); panics saying how to build them.
pub fn bin_dir() -> PathBuf {
    let dfdaemon = sibling_binary("dfdaemon").unwrap_or_else(|e| panic!("{e:#}"));
    dfdaemon.parent().expect("a binary has a directory").to_path_buf()
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
