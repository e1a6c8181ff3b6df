//! dfget back-to-source vs `curl`, from the same local origin.
//!
//! Each run downloads the same random file with curl, then with dfget through
//! a fresh dfdaemon with an empty data dir, so the runs interleave and drift
//! on a shared machine hits both sides alike. Every output is checked against
//! the file's SHA-256.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use super::report::{BacksourceReport, RunResult};
use super::scratch::scratch_with_blob;
use testkit::dfdaemon::{DaemonOptions, DaemonProcess};
use testkit::origin::{Behavior, Content, Origin};

/// What to run and where.
#[derive(Clone, Debug)]
pub struct BacksourceConfig {
    /// Size of the random file in bytes.
    pub size: u64,
    /// Number of interleaved curl/dfget runs.
    pub runs: u32,
    /// The dfdaemon binary.
    pub dfdaemon: PathBuf,
    /// The dfget binary.
    pub dfget: PathBuf,
    /// The curl binary (looked up on `PATH` if bare).
    pub curl: PathBuf,
    /// Directory in which a scratch directory is created (and removed at the
    /// end).
    pub workdir: PathBuf,
    /// Run only the curl side (to check the harness and the machine).
    pub curl_only: bool,
    /// Limit for each single download; the downloader is killed after it.
    pub download_timeout: Duration,
}

/// Runs the benchmark and returns its report. Progress goes to stderr.
pub async fn run(cfg: &BacksourceConfig) -> anyhow::Result<BacksourceReport> {
    if cfg.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !cfg.curl_only {
        check_binary("dfdaemon", &cfg.dfdaemon)?;
        check_binary("dfget", &cfg.dfget)?;
    }
    let (scratch, blob, digest) = scratch_with_blob(&cfg.workdir, "darter-bench-", cfg.size).await?;
    let (dir, size) = (scratch.path().to_owned(), cfg.size);

    let origin = Origin::start().await;
    origin.add("/blob", Content::File(blob), Behavior::default());
    let url = origin.url("/blob");

    let mut results = Vec::new();
    for run in 1..=cfg.runs {
        let curl_secs = time_curl(cfg, &url, &dir.join("curl.out"), &digest).await?;
        let curl_mib_s = mib_per_s(size, curl_secs);
        let (dfget_mib_s, dfget_origin_bytes) = if cfg.curl_only {
            (None, None)
        } else {
            let before = origin.total_body_bytes();
            let secs = time_dfget(cfg, run, &dir, &url, &digest).await?;
            (Some(mib_per_s(size, secs)), Some(origin.total_body_bytes() - before))
        };
        let result = RunResult { run, curl_mib_s, dfget_mib_s, dfget_origin_bytes };
        eprintln!(
            "run {run}/{}: curl {curl_mib_s:.1} MiB/s, dfget {}",
            cfg.runs,
            dfget_mib_s.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} MiB/s"))
        );
        results.push(result);
    }
    drop(origin);
    scratch.close().context("remove scratch dir")?;
    Ok(BacksourceReport::new(size, results))
}

pub(crate) fn check_binary(name: &str, path: &Path) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!(
            "{name} not found at {}: build it with `cargo build --release --workspace --bins` \
             (darter-bench looks next to its own executable) or pass --{name} PATH",
            path.display()
        );
    }
    Ok(())
}

pub(crate) fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64 / secs.max(1e-9)
}

/// Downloads `url` with curl into `out`, checks it and removes it; returns
/// the seconds taken.
async fn time_curl(cfg: &BacksourceConfig, url: &str, out: &Path, digest: &str) -> anyhow::Result<f64> {
    let mut cmd = Command::new(&cfg.curl);
    cmd.args(["-sS", "-o"]).arg(out).arg(url);
    let secs = time_download("curl", cmd, cfg.download_timeout).await?;
    verify_and_remove("curl", out, digest).await?;
    Ok(secs)
}

/// Starts a fresh dfdaemon, downloads `url` through it with dfget, checks and
/// removes the output and the daemon's data; returns the dfget seconds.
async fn time_dfget(cfg: &BacksourceConfig, run: u32, dir: &Path, url: &str, digest: &str) -> anyhow::Result<f64> {
    let data_dir = dir.join(format!("daemon-{run}"));
    let mut daemon = DaemonProcess::start(DaemonOptions::new(&cfg.dfdaemon, &data_dir)).await?;
    let socket = daemon.socket.clone();
    let out = dir.join("dfget.out");
    let mut cmd = Command::new(&cfg.dfget);
    cmd.arg(url).arg("-O").arg(&out).arg("--socket").arg(&socket).arg("--no-progress");
    let secs = match time_download("dfget", cmd, cfg.download_timeout).await {
        Ok(secs) => secs,
        Err(e) => bail!("{e:#}\n--- dfdaemon log tail ---\n{}", daemon.log_tail(20)),
    };
    daemon.kill();
    verify_and_remove("dfget", &out, digest).await?;
    std::fs::remove_dir_all(&data_dir).with_context(|| format!("remove {}", data_dir.display()))?;
    Ok(secs)
}

/// Runs `cmd` to completion within `limit` (killing it after), fails on a
/// non-zero exit with its stderr, and returns the wall-clock seconds.
async fn time_download(name: &str, mut cmd: Command, limit: Duration) -> anyhow::Result<f64> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // Start every timed download on a clean page cache: dirty data left by an
    // earlier run (or another program) throttles writers and skews the ratio.
    let _ = Command::new("sync").status().await;
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("run {name}"))?;
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("{name} did not finish within {limit:?}; killed"))?
        .with_context(|| format!("wait for {name}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "{name} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(secs)
}

pub(crate) async fn verify_and_remove(name: &str, out: &Path, digest: &str) -> anyhow::Result<()> {
    let path = out.to_owned();
    let actual = tokio::task::spawn_blocking(move || testkit::data::sha256_file(path))
        .await?
        .with_context(|| format!("read {name} output {}", out.display()))?;
    if actual != digest {
        bail!("{name} output has sha256 {actual}, expected {digest}");
    }
    std::fs::remove_file(out)?;
    Ok(())
}
