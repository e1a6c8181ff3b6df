//! The registry mirror: a blob through dfdaemon's mirror vs straight from the
//! registry, with curl on both sides.
//!
//! The "registry" is the test origin serving a random blob at
//! `/v2/bench/blobs/sha256:<digest>`. Each run starts a fresh dfdaemon (empty
//! data dir, no swarm: the blob comes from the origin) and measures, all
//! with `curl` writing to disk:
//! - **cold**: the first request through the mirror (`?ns=` as containerd
//!   sends it): time to first byte and throughput while the blob is fetched;
//! - **warm**: the same request again, served from the daemon's storage;
//! - **direct**: the blob straight from the registry.
//!
//! Warm and direct alternate, so drift on a shared machine hits both. Every
//! body is checked against the digest.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::Command;

use super::backsource::{check_binary, mib_per_s, verify_and_remove};
use super::report::median;
use super::scratch::scratch_with_blob;
use testkit::dfdaemon::{DaemonOptions, DaemonProcess};
use testkit::origin::{Behavior, Content, Origin};

/// What to run and where.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// Blob size in bytes.
    pub size: u64,
    /// Runs (each with a fresh dfdaemon).
    pub runs: u32,
    /// The dfdaemon binary.
    pub dfdaemon: PathBuf,
    /// The curl binary.
    pub curl: PathBuf,
    /// Directory in which a scratch directory is created (and removed).
    pub workdir: PathBuf,
    /// Limit for each single download.
    pub download_timeout: Duration,
}

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct MirrorRun {
    pub run: u32,
    /// Time to first byte of the cold request through the mirror, ms.
    pub cold_ttfb_ms: f64,
    /// Throughput of the cold request, MiB/s.
    pub cold_mib_s: f64,
    /// Throughput of the warm request through the mirror, MiB/s.
    pub warm_mib_s: f64,
    /// Throughput straight from the registry, MiB/s.
    pub direct_mib_s: f64,
    /// Time to first byte straight from the registry, ms.
    pub direct_ttfb_ms: f64,
}

/// The whole result.
#[derive(Clone, Debug, Serialize)]
pub struct MirrorReport {
    pub size_bytes: u64,
    pub runs: Vec<MirrorRun>,
    pub median_cold_ttfb_ms: f64,
    pub median_direct_ttfb_ms: f64,
    pub median_cold_mib_s: f64,
    pub median_warm_mib_s: f64,
    pub median_direct_mib_s: f64,
    /// Warm through the mirror over direct (target >= 0.9).
    pub warm_over_direct: f64,
}

impl MirrorReport {
    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "blob of {} bytes, {} runs (median)\n\n| measure | through the mirror | from the registry | ratio |\n|---|--:|--:|--:|\n",
            self.size_bytes,
            self.runs.len()
        );
        s.push_str(&format!(
            "| time to first byte, cold | {:.1} ms | {:.1} ms | |\n",
            self.median_cold_ttfb_ms, self.median_direct_ttfb_ms
        ));
        s.push_str(&format!("| throughput, cold (fetching) | {:.1} MiB/s | | |\n", self.median_cold_mib_s));
        s.push_str(&format!(
            "| throughput, warm | {:.1} MiB/s | {:.1} MiB/s | {:.2}x |\n",
            self.median_warm_mib_s, self.median_direct_mib_s, self.warm_over_direct
        ));
        s
    }
}

/// Runs the benchmark. Progress goes to stderr.
pub async fn run(cfg: &MirrorConfig) -> anyhow::Result<MirrorReport> {
    if cfg.runs == 0 {
        bail!("--runs must be at least 1");
    }
    check_binary("dfdaemon", &cfg.dfdaemon)?;
    let (scratch, blob, digest) = scratch_with_blob(&cfg.workdir, "darter-bench-mirror-", cfg.size).await?;
    let (dir, size) = (scratch.path().to_owned(), cfg.size);
    let origin = Origin::start().await;
    let path = format!("/v2/bench/blobs/sha256:{digest}");
    origin.add(&path, Content::File(blob), Behavior::default());
    let direct_url = origin.url(&path);
    let registry = format!("127.0.0.1:{}", origin.addr().port());

    let mut runs = Vec::new();
    for run in 1..=cfg.runs {
        let mut options = DaemonOptions::new(&cfg.dfdaemon, dir.join(format!("daemon-{run}")));
        options.proxy_port = Some(0);
        // The origin is on loopback, which the proxy reaches only when allow-listed.
        options.env = vec![
            ("DFDAEMON__PROXY__INSECURE_REGISTRIES".into(), format!("[\"{registry}\"]")),
            ("DFDAEMON__PROXY__ALLOWED_DESTINATIONS".into(), format!("[\"{registry}\"]")),
        ];
        let mut daemon = DaemonProcess::start(options).await?;
        let proxy = daemon.proxy_addr().context("the daemon was started with a proxy")?;
        let mirror_url = format!("http://{proxy}{path}?ns={registry}");
        let out = dir.join("out");
        let cold = curl(cfg, &mirror_url, &out, &digest).await;
        let cold = match cold {
            Ok(t) => t,
            Err(e) => bail!("{e:#}\n--- dfdaemon log tail ---\n{}", daemon.log_tail(20)),
        };
        let direct = curl(cfg, &direct_url, &out, &digest).await?;
        let warm = curl(cfg, &mirror_url, &out, &digest).await?;
        daemon.kill();
        let _ = std::fs::remove_dir_all(dir.join(format!("daemon-{run}")));
        let r = MirrorRun {
            run,
            cold_ttfb_ms: cold.ttfb * 1000.0,
            cold_mib_s: mib_per_s(size, cold.total),
            warm_mib_s: mib_per_s(size, warm.total),
            direct_mib_s: mib_per_s(size, direct.total),
            direct_ttfb_ms: direct.ttfb * 1000.0,
        };
        eprintln!(
            "run {run}/{}: cold ttfb {:.1} ms ({:.1} MiB/s), warm {:.1} MiB/s, direct {:.1} MiB/s",
            cfg.runs, r.cold_ttfb_ms, r.cold_mib_s, r.warm_mib_s, r.direct_mib_s
        );
        runs.push(r);
    }
    drop(origin);
    scratch.close()?;
    let med = |f: fn(&MirrorRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
    let (warm, direct) = (med(|r| r.warm_mib_s), med(|r| r.direct_mib_s));
    Ok(MirrorReport {
        size_bytes: size,
        median_cold_ttfb_ms: med(|r| r.cold_ttfb_ms),
        median_direct_ttfb_ms: med(|r| r.direct_ttfb_ms),
        median_cold_mib_s: med(|r| r.cold_mib_s),
        median_warm_mib_s: warm,
        median_direct_mib_s: direct,
        warm_over_direct: if direct > 0.0 { warm / direct } else { 0.0 },
        runs,
    })
}

/// curl's own timings of one download.
struct Timing {
    ttfb: f64,
    total: f64,
}

/// Downloads `url` to `out` with curl (after a `sync`), checks and removes it.
async fn curl(cfg: &MirrorConfig, url: &str, out: &Path, digest: &str) -> anyhow::Result<Timing> {
    let _ = Command::new("sync").status().await;
    let child = Command::new(&cfg.curl)
        .args(["-sS", "--fail", "-w", "%{time_starttransfer} %{time_total}", "-o"])
        .arg(out)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("run curl")?;
    let output = tokio::time::timeout(cfg.download_timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("curl did not finish within {:?}", cfg.download_timeout))??;
    if !output.status.success() {
        bail!("curl {url} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split_whitespace().map(str::parse::<f64>);
    let (Some(Ok(ttfb)), Some(Ok(total))) = (parts.next(), parts.next()) else {
        bail!("unexpected curl timing output {text:?}");
    };
    verify_and_remove("curl", out, digest).await?;
    Ok(Timing { ttfb, total })
}
