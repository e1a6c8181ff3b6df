//! Harness for dfdaemon's integration tests: a real `dfdaemon` process on
//! ephemeral ports and a real `dfget` process, against the testkit origin.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use darter_proto::dfdaemon::v1::{StatTaskRequest, TaskInfo, dfdaemon_download_client::DfdaemonDownloadClient};
use testkit::dfdaemon::{DaemonOptions, DaemonProcess};
use testkit::eventually::DEADLINE;

/// A loopback port nothing listens on (for dead-origin tests).
pub fn refused_port() -> u16 {
    testkit::net::refused_addr().port()
}

/// A dfdaemon process with its own data directory and socket, on loopback
/// ports the kernel picked (read back from its ready file, so tests can reach
/// its piece server, metrics and proxy).
pub struct Daemon {
    pub socket: PathBuf,
    pub piece_port: u16,
    pub metrics_port: u16,
    /// The registry mirror / proxy port, when started with one.
    pub proxy_port: Option<u16>,
    pub process: DaemonProcess,
}

impl Daemon {
    /// Starts a daemon under `dir` with extra `DFDAEMON__*` env overrides.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(dir, env, false).await
    }

    /// Starts a daemon that also serves the registry mirror and proxy.
    pub async fn start_with_proxy(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(dir, env, true).await
    }

    async fn start_with(dir: &Path, env: &[(&str, &str)], proxy: bool) -> Daemon {
        let mut options = DaemonOptions::new(env!("CARGO_BIN_EXE_dfdaemon"), dir);
        options.proxy_port = proxy.then_some(0);
        options.log_level = "info,dfdaemon=debug".into();
        options.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let process = DaemonProcess::start(options).await.unwrap_or_else(|e| panic!("{e:#}"));
        Daemon {
            socket: process.socket.clone(),
            piece_port: process.piece_addr().port(),
            metrics_port: process.metrics_addr().port(),
            proxy_port: process.proxy_addr().map(|a| a.port()),
            process,
        }
    }

    /// Where its `/metrics` and `/healthz` are served.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.process.metrics_addr()
    }

    /// Kills the daemon with SIGKILL (no goodbye).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends SIGTERM and waits for it to exit: its drain deadline
    /// ([`dfdaemon::DRAIN_TIMEOUT`]) plus the kit's [`DEADLINE`] to get out.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.terminate(dfdaemon::DRAIN_TIMEOUT + DEADLINE).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts it again on the same data directory and ports.
    pub async fn restart(&mut self) {
        self.process.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `dfget URL -O out ARGS...` against this daemon.
    pub async fn dfget(&self, url: &str, out: &Path, args: &[&str]) -> Dfget {
        dfget_on(&self.socket, url, out, args).await
    }

    /// StatTask over the download API.
    pub async fn stat(&self, task_id: &str) -> Result<TaskInfo, tonic::Status> {
        let channel = dfdaemon::dfget::connect(&self.socket).await.expect("connect to dfdaemon");
        DfdaemonDownloadClient::new(channel)
            .stat_task(StatTaskRequest { task_id: task_id.to_string() })
            .await
            .map(|r| r.into_inner())
    }
}

/// What a dfget run did.
#[derive(Debug)]
pub struct Dfget {
    pub code: i32,
    pub stderr: String,
}

/// Runs dfget on a socket.
pub async fn dfget_on(socket: &Path, url: &str, out: &Path, args: &[&str]) -> Dfget {
    dfget_as(None, socket, url, out, args).await
}

/// Runs dfget on a socket, as `user` (`(uid, gid)`, no supplementary
/// groups) when given.
pub async fn dfget_as(user: Option<(u32, u32)>, socket: &Path, url: &str, out: &Path, args: &[&str]) -> Dfget {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dfget"));
    cmd.arg(url).arg("-O").arg(out).arg("--socket").arg(socket).arg("--no-progress").args(args);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let output = cmd.output().await.expect("run dfget");
    Dfget { code: output.status.code().unwrap_or(-1), stderr: String::from_utf8_lossy(&output.stderr).into_owned() }
}

/// A blocking request written by hand as raw HTTP/1.1, for tests of the HTTP
/// exchange itself (status lines, headers, a server's queue); returns
/// (status, headers, body). Metrics are read with `testkit::metrics`.
pub fn raw_get(port: u16, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}
