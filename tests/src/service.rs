//! One real Darter service process (manager, scheduler or dfdaemon): started
//! with `--ready-file`, ready once it has published its bound addresses and
//! its `/healthz` answers 200; killed (SIGKILL) on drop, terminated (SIGTERM)
//! or restarted on the addresses it had.
//!
//! No port is picked by the kit: a service binds what it is told (port 0 on
//! loopback by default), the kernel chooses, and the ready file says what it
//! chose. A restart passes the published addresses back, so peers that know
//! them reach the new process.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::eventually::{START_DEADLINE, patience, poll, wait_until};
use crate::process::ChildGuard;

/// How to start a service.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Its name in file names and messages (`manager`, `scheduler`, `dfdaemon`).
    pub name: String,
    /// The binary.
    pub bin: PathBuf,
    /// Its directory: the log (`<name>.log`) and the ready file live here.
    pub dir: PathBuf,
    /// The listeners to bind: `(ready-file name, flag, address)`, e.g.
    /// `("grpc", "--grpc-addr", 127.0.0.1:0)`. Port 0 lets the kernel choose.
    pub listeners: Vec<(&'static str, &'static str, SocketAddr)>,
    /// More flags.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Network namespace to run it in (`ip netns exec`).
    pub netns: Option<String>,
}

impl ServiceSpec {
    /// A service `name` from `bin` under `dir`, no listeners or flags yet.
    pub fn new(name: &str, bin: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            bin: bin.into(),
            dir: dir.into(),
            listeners: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            netns: None,
        }
    }

    /// Adds a listener `name` bound with `flag` on `ip`, port chosen by the kernel.
    pub fn listener(mut self, name: &'static str, flag: &'static str, ip: IpAddr) -> Self {
        self.listeners.push((name, flag, SocketAddr::new(ip, 0)));
        self
    }
}

/// A running service.
#[derive(Debug)]
pub struct ServiceProcess {
    spec: ServiceSpec,
    addresses: BTreeMap<String, String>,
    /// Its log file (stdout and stderr, appended across restarts).
    pub log_path: PathBuf,
    ready_path: PathBuf,
    child: Option<ChildGuard>,
}

impl ServiceProcess {
    /// Starts the service and waits until it is ready.
    pub async fn start(spec: ServiceSpec) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&spec.dir).with_context(|| format!("create {}", spec.dir.display()))?;
        let mut s = Self {
            log_path: spec.dir.join(format!("{}.log", spec.name)),
            ready_path: spec.dir.join(format!("{}.ready.json", spec.name)),
            spec,
            addresses: BTreeMap::new(),
            child: None,
        };
        s.spawn().await?;
        Ok(s)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let spec = &self.spec;
        let _ = std::fs::remove_file(&self.ready_path);
        let log = File::options().create(true).append(true).open(&self.log_path)?;
        let mut command = match &spec.netns {
            None => Command::new(&spec.bin),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&spec.bin);
                c
            }
        };
        for (name, flag, addr) in &spec.listeners {
            // Again on the published address after a restart.
            let addr = self.addresses.get(*name).cloned().unwrap_or_else(|| addr.to_string());
            command.args([*flag, addr.as_str()]);
        }
        let child = command
            .arg("--ready-file")
            .arg(&self.ready_path)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", spec.bin.display()))?;
        let mut child = ChildGuard::new(child);
        let what = format!("{} to publish its addresses", spec.name);
        let ready = poll(&what, START_DEADLINE, || {
            let published = match child.0.try_wait() {
                Ok(Some(status)) => Some(Err(anyhow::anyhow!("{} exited at start ({status})", spec.name))),
                _ => self.read_ready(),
            };
            async move { published }
        })
        .await
        .and_then(|r| r);
        let addresses = match ready {
            Ok(a) => a,
            Err(e) => bail!("{e:#}\n--- {} log tail ---\n{}", spec.name, self.log_tail(30)),
        };
        self.addresses = addresses;
        if let Some(metrics) = self.addresses.get("metrics").cloned() {
            let healthy = wait_until(&format!("{} /healthz to answer 200", spec.name), START_DEADLINE, || {
                let exited = child.has_exited();
                let metrics = metrics.clone();
                async move { exited || healthz(&metrics).await == Some(200) }
            })
            .await;
            if let Err(e) = healthy.and_then(|()| match child.0.try_wait() {
                Ok(Some(status)) => Err(anyhow::anyhow!("{} exited while starting ({status})", spec.name)),
                _ => Ok(()),
            }) {
                bail!("{e:#}\n--- {} log tail ---\n{}", spec.name, self.log_tail(30));
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// The ready file's addresses, once it is there (`Some(Err)` when it is malformed).
    fn read_ready(&self) -> Option<anyhow::Result<BTreeMap<String, String>>> {
        let text = std::fs::read_to_string(&self.ready_path).ok()?;
        Some(parse_ready(&text).with_context(|| format!("ready file {}", self.ready_path.display())))
    }

    /// The published address of listener `name` (a socket address or, for a
    /// unix socket, its path).
    pub fn address(&self, name: &str) -> Option<&str> {
        self.addresses.get(name).map(String::as_str)
    }

    /// The published TCP address of listener `name`; panics when it has none
    /// (a test asking for a listener it did not configure).
    pub fn addr(&self, name: &str) -> SocketAddr {
        let a = self.address(name).unwrap_or_else(|| panic!("{} has no listener {name:?}", self.spec.name));
        a.parse().unwrap_or_else(|e| panic!("{} listener {name} at {a:?}: {e}", self.spec.name))
    }

    /// How it was started.
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// Whether it was started and has exited since.
    pub fn has_exited(&mut self) -> bool {
        self.exit_status().is_some()
    }

    /// Its exit status once it has exited on its own (`None` while it runs,
    /// and after [`ServiceProcess::kill`]).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.0.try_wait().ok().flatten()
    }

    /// Kills it with SIGKILL (no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` (times patience) for it to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().with_context(|| format!("{} is not running", self.spec.name))?;
        crate::process::signal(child.id(), "TERM")?;
        let exited = poll(&format!("{} to exit after SIGTERM", self.spec.name), timeout, || {
            let status = child.0.try_wait().ok().flatten();
            async move { status }
        })
        .await;
        exited.map_err(|e| anyhow::anyhow!("{e}\n--- {} log tail ---\n{}", self.spec.name, self.log_tail(20)))
    }

    /// Kills it and starts it again on the addresses it had.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }
}

/// The `addresses` of a ready file (see `darter_common::service`).
fn parse_ready(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let doc: serde_json::Value = serde_json::from_str(text)?;
    let map = doc.get("addresses").and_then(|a| a.as_object()).context("no `addresses` object")?;
    map.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_str().with_context(|| format!("address {k} is not a string"))?.to_owned())))
        .collect()
}

/// The status `GET /healthz` answers at `addr`, `None` when nothing answers.
async fn healthz(addr: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: darter\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(patience(Duration::from_secs(2)), exchange).await.ok().flatten()
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    last_lines(&std::fs::read_to_string(path).unwrap_or_default(), n)
}

/// `text` without terminal colour codes (a service's log read as text).
pub fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_files_are_read_strictly() {
        let a = parse_ready(r#"{"pid":1,"addresses":{"grpc":"127.0.0.1:5","socket":"/x.sock"}}"#).unwrap();
        assert_eq!(a.get("grpc").map(String::as_str), Some("127.0.0.1:5"));
        assert_eq!(a.get("socket").map(String::as_str), Some("/x.sock"));
        assert!(parse_ready(r#"{"pid":1}"#).is_err());
        assert!(parse_ready(r#"{"addresses":{"grpc":5}}"#).is_err());
        assert!(parse_ready("{").is_err());
    }
}
