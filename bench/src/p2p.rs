//! One parent, one child, on loopback: what a piece transfer costs.
//!
//! Per run, a fresh cluster without a seed (scheduler and two dfdaemons):
//! peer 0 downloads the file from the origin, then peer 1 downloads it, with
//! peer 0 as its only parent. Timed and measured is peer 1's download:
//! wall-clock throughput, and the CPU seconds per GiB of the child (receive,
//! verify, store) and of the parent (serve) over that window, from
//! `/proc/<pid>/stat`. The baseline in the same run is `curl` from the same
//! origin to a file (receive and store, no verification), its CPU from the
//! shell's `times`. Nothing limits the links, so this measures the CPU path,
//! not the swarm; every output is checked against the file's SHA-256, and the
//! child must have fetched every byte from its parent (the origin sends it
//! nothing).
//!
//! The modes of `--security` take turns being first: run 2 starts with the
//! second, and so on ([`rotated`]), so give as many runs as modes (or a
//! multiple) for medians that do not favour one.
//!
//! Memory: how much writing a GiB into the page cache costs depends on
//! what the machine did just before (seen here: the child's CPU per GiB
//! ranged from 1.6 to 6.4 s over three runs of the same build when each run
//! followed the previous one's writes, and curl's from 0.9 to 2.9). So that
//! curl and the child start alike, each timed download starts after a
//! `sync`, a drop of the page cache (as root), the file it reads from read
//! back in, and a pause of [`SETTLE`]. Without root the caches are left
//! alone, and the report says so.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::Command;

use super::backsource::{check_binary, mib_per_s, verify_and_remove};
use super::report::median;
use super::scratch::scratch_with_blob;
use crate::swarm::usage::cpu_times;
use testkit::cluster::{Cluster, ClusterOptions};
use testkit::origin::{Behavior, Content, Origin};

/// Pause after dropping the caches, before a timed download.
const SETTLE: Duration = Duration::from_secs(3);

/// What to run and where.
#[derive(Clone, Debug)]
pub struct P2pBenchConfig {
    /// Size of the random file in bytes.
    pub size: u64,
    /// Runs, each with a fresh cluster.
    pub runs: u32,
    /// Directory holding `scheduler`, `dfdaemon` and `dfget`.
    pub bin_dir: PathBuf,
    /// The curl binary.
    pub curl: PathBuf,
    /// Directory for a scratch directory (removed at the end).
    pub workdir: PathBuf,
    /// Limit for each single download.
    pub download_timeout: Duration,
    /// How the members talk, each measured in every run (in this order).
    pub modes: Vec<Security>,
}

/// How the cluster's members talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Everything in plaintext (development mode): the baseline.
    Plaintext,
    /// Mutual TLS on control connections, piece grants; pieces in plain HTTP
    /// with `sendfile` (the default).
    Mtls,
    /// The same with piece traffic encrypted (`upload.encrypt`).
    Encrypted,
}

impl Security {
    fn label(self) -> &'static str {
        match self {
            Security::Plaintext => "plaintext",
            Security::Mtls => "mtls",
            Security::Encrypted => "encrypted",
        }
    }
}

/// One run.
#[derive(Clone, Debug, Serialize)]
pub struct P2pRun {
    /// 1-based run number.
    pub run: u32,
    /// How the members talked.
    pub mode: Security,
    /// curl from the origin, MiB/s.
    pub curl_mib_s: f64,
    /// curl's user + system CPU seconds per GiB.
    pub curl_cpu_s_per_gib: f64,
    /// The child's download from its parent, MiB/s.
    pub p2p_mib_s: f64,
    /// The child's CPU seconds per GiB (user + system; user alone next).
    pub child_cpu_s_per_gib: f64,
    /// The child's user CPU seconds per GiB.
    pub child_user_s_per_gib: f64,
    /// The parent's CPU seconds per GiB served.
    pub parent_cpu_s_per_gib: f64,
    /// The parent's user CPU seconds per GiB served.
    pub parent_user_s_per_gib: f64,
}

/// The result, as written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct P2pReport {
    /// Benchmark name, `p2p`.
    pub benchmark: &'static str,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Every run (one row per mode).
    pub runs: Vec<P2pRun>,
    /// Medians of every field, per mode.
    pub medians: Vec<P2pRun>,
    /// Whether the page cache was dropped before each timed download (root).
    pub caches_dropped: bool,
}

impl P2pReport {
    fn new(size_bytes: u64, runs: Vec<P2pRun>, caches_dropped: bool) -> Self {
        let mut modes: Vec<Security> = Vec::new();
        for r in &runs {
            if !modes.contains(&r.mode) {
                modes.push(r.mode);
            }
        }
        let medians = modes.into_iter().filter_map(|mode| Self::median_of(&runs, mode)).collect();
        Self { benchmark: "p2p", size_bytes, runs, medians, caches_dropped }
    }

    fn median_of(runs: &[P2pRun], mode: Security) -> Option<P2pRun> {
        let runs: Vec<&P2pRun> = runs.iter().filter(|r| r.mode == mode).collect();
        let m = |f: fn(&P2pRun) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
        {
            Some(P2pRun {
                run: 0,
                mode,
                curl_mib_s: m(|r| r.curl_mib_s)?,
                curl_cpu_s_per_gib: m(|r| r.curl_cpu_s_per_gib)?,
                p2p_mib_s: m(|r| r.p2p_mib_s)?,
                child_cpu_s_per_gib: m(|r| r.child_cpu_s_per_gib)?,
                child_user_s_per_gib: m(|r| r.child_user_s_per_gib)?,
                parent_cpu_s_per_gib: m(|r| r.parent_cpu_s_per_gib)?,
                parent_user_s_per_gib: m(|r| r.parent_user_s_per_gib)?,
            })
        }
    }

    /// The runs and their medians as a Markdown table.
    pub fn markdown(&self) -> String {
        let size = testkit::size::format_size(self.size_bytes);
        let mut out = format!(
            "p2p on loopback, {size}: one parent, one child (CPU: user + system s/GiB, user in brackets)\n\n\
             | run | members | curl MiB/s | curl CPU | P2P MiB/s | child CPU | parent CPU |\n\
             |---:|---|---:|---:|---:|---:|---:|\n"
        );
        let row = |label: String, r: &P2pRun| {
            format!(
                "| {label} | {} | {:.1} | {:.2} | {:.1} | {:.2} ({:.2}) | {:.2} ({:.2}) |\n",
                r.mode.label(),
                r.curl_mib_s,
                r.curl_cpu_s_per_gib,
                r.p2p_mib_s,
                r.child_cpu_s_per_gib,
                r.child_user_s_per_gib,
                r.parent_cpu_s_per_gib,
                r.parent_user_s_per_gib
            )
        };
        for r in &self.runs {
            out.push_str(&row(r.run.to_string(), r));
        }
        for m in &self.medians {
            out.push_str(&row("median".into(), m));
        }
        if !self.caches_dropped {
            out.push_str(
                "\npage cache not dropped before the timed downloads (not root): figures depend on what ran before\n",
            );
        }
        out
    }
}

/// Runs the benchmark. Progress goes to stderr.
pub async fn run(cfg: &P2pBenchConfig) -> anyhow::Result<P2pReport> {
    if cfg.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if cfg.modes.is_empty() {
        bail!("--security needs at least one mode");
    }
    for name in ["scheduler", "dfdaemon", "dfget"] {
        check_binary(name, &cfg.bin_dir.join(name))?;
    }
    let (scratch, blob, digest) = scratch_with_blob(&cfg.workdir, "darter-bench-p2p-", cfg.size).await?;
    let (dir, size) = (scratch.path().to_owned(), cfg.size);
    let origin = Origin::start().await;
    origin.add("/blob", Content::File(blob), Behavior::default());
    let url = origin.url("/blob");

    let mut runs = Vec::new();
    let mut caches_dropped = true;
    for run in 1..=cfg.runs {
        caches_dropped &= settle(&[&dir.join("blob")]).await;
        let (curl_secs, curl_cpu) = time_curl(cfg, &url, &dir.join("curl.out"), &digest).await?;
        for mode in rotated(&cfg.modes, run) {
            let run_dir = dir.join(format!("run-{run}-{}", mode.label()));
            let p2p = p2p_run(cfg, mode, &run_dir, &origin, &url, &digest).await?;
            std::fs::remove_dir_all(&run_dir).with_context(|| format!("remove {}", run_dir.display()))?;
            let gib = size as f64 / (1u64 << 30) as f64;
            let r = P2pRun {
                run,
                mode,
                curl_mib_s: mib_per_s(size, curl_secs),
                curl_cpu_s_per_gib: curl_cpu / gib,
                p2p_mib_s: mib_per_s(size, p2p.seconds),
                child_cpu_s_per_gib: (p2p.child.0 + p2p.child.1) / gib,
                child_user_s_per_gib: p2p.child.0 / gib,
                parent_cpu_s_per_gib: (p2p.parent.0 + p2p.parent.1) / gib,
                parent_user_s_per_gib: p2p.parent.0 / gib,
            };
            eprintln!(
                "run {run}/{} ({}): curl {:.1} MiB/s at {:.2} CPU s/GiB; p2p {:.1} MiB/s, child {:.2}, parent {:.2} CPU s/GiB",
                cfg.runs,
                mode.label(),
                r.curl_mib_s,
                r.curl_cpu_s_per_gib,
                r.p2p_mib_s,
                r.child_cpu_s_per_gib,
                r.parent_cpu_s_per_gib
            );
            runs.push(r);
        }
    }
    drop(origin);
    scratch.close().context("remove scratch dir")?;
    Ok(P2pReport::new(size, runs, caches_dropped))
}

/// The modes in the order run `run` (from 1) measures them: rotated by one
/// more place each run, so that each comes first, second... equally often
/// over as many runs as there are modes. Seen here: whichever mode ran
/// last in a run cost the child 0.3 to 0.7 CPU s/GiB more than the first,
/// whatever the modes were, despite the sync and cache drop before each.
fn rotated(modes: &[Security], run: u32) -> Vec<Security> {
    let mut modes = modes.to_vec();
    if !modes.is_empty() {
        let by = (run as usize - 1) % modes.len();
        modes.rotate_left(by);
    }
    modes
}

/// Drops the page cache (when root), reads `warm` back in, and waits
/// [`SETTLE`]; returns whether the cache was dropped.
async fn settle(warm: &[&Path]) -> bool {
    let _ = Command::new("sync").status().await;
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok();
    for path in warm {
        let path = path.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || {
            std::fs::File::open(path).and_then(|mut f| std::io::copy(&mut f, &mut std::io::sink()))
        })
        .await;
    }
    tokio::time::sleep(SETTLE).await;
    dropped
}

/// The timed child download: seconds, and (user, system) CPU seconds of the
/// child and of the parent over it.
struct P2pTimes {
    seconds: f64,
    child: (f64, f64),
    parent: (f64, f64),
}

async fn p2p_run(
    cfg: &P2pBenchConfig,
    mode: Security,
    dir: &Path,
    origin: &Origin,
    url: &str,
    digest: &str,
) -> anyhow::Result<P2pTimes> {
    let mut options = ClusterOptions::new(dir, &cfg.bin_dir, 2);
    options.seed = false;
    options.plaintext = mode == Security::Plaintext;
    if mode == Security::Encrypted {
        options.daemon_env.push(("DFDAEMON__UPLOAD__ENCRYPT".into(), "true".into()));
    }
    let cluster = Cluster::start(&options).await?;
    let (parent, child) = (&cluster.peers[0], &cluster.peers[1]);
    let before = origin.total_body_bytes();
    let out = dir.join("parent.out");
    dfget(cfg, &parent.socket, url, &out).await.with_context(|| format!("parent\n{}", parent.log_tail(20)))?;
    // The output is a hard link to the parent's copy: reading it back warms
    // what the parent will serve.
    settle(&[&out]).await;
    verify_and_remove("parent", &out, digest).await?;
    let from_origin = origin.total_body_bytes() - before;

    let pids = (parent.pid().context("parent gone")?, child.pid().context("child gone")?);
    let (parent0, child0) = (cpu_times(pids.0), cpu_times(pids.1));
    let started = Instant::now();
    let out = dir.join("child.out");
    dfget(cfg, &child.socket, url, &out).await.with_context(|| format!("child\n{}", child.log_tail(20)))?;
    let seconds = started.elapsed().as_secs_f64();
    let (parent1, child1) = (cpu_times(pids.0), cpu_times(pids.1));
    verify_and_remove("child", &out, digest).await?;
    // Without a seed, whatever the child did not get from its parent came
    // from the origin.
    let extra = origin.total_body_bytes() - before - from_origin;
    if extra > 0 {
        bail!("the child fetched {extra} bytes from the origin instead of its parent");
    }
    let delta = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| -> anyhow::Result<(f64, f64)> {
        let ((u0, s0), (u1, s1)) = (a.context("no CPU times")?, b.context("no CPU times")?);
        Ok((u1 - u0, s1 - s0))
    };
    Ok(P2pTimes { seconds, child: delta(child0, child1)?, parent: delta(parent0, parent1)? })
}

async fn dfget(cfg: &P2pBenchConfig, socket: &Path, url: &str, out: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new(cfg.bin_dir.join("dfget"));
    cmd.arg(url).arg("-O").arg(out).arg("--socket").arg(socket).arg("--no-progress");
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(cfg.download_timeout, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("dfget did not finish within {:?}", cfg.download_timeout))??;
    if !output.status.success() {
        bail!("dfget failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// curl to a file under the shell's `times`: seconds and curl's CPU seconds.
async fn time_curl(cfg: &P2pBenchConfig, url: &str, out: &Path, digest: &str) -> anyhow::Result<(f64, f64)> {
    let script = r#""$0" -sS -o "$1" "$2" && times"#;
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script]).arg(&cfg.curl).arg(out).arg(url).stdin(Stdio::null()).kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(cfg.download_timeout, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("curl did not finish within {:?}", cfg.download_timeout))??;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("curl failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    let cpu = children_cpu(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("cannot read `times`: {:?}", String::from_utf8_lossy(&output.stdout)))?;
    verify_and_remove("curl", out, digest).await?;
    Ok((seconds, cpu))
}

/// The children's user + system seconds from bash's `times` (its second
/// line, e.g. `0m0.412s 0m1.105s`).
fn children_cpu(times: &str) -> Option<f64> {
    let line = times.lines().nth(1)?;
    let seconds = |field: &str| -> Option<f64> {
        let (m, s) = field.strip_suffix('s')?.split_once('m')?;
        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    };
    let mut fields = line.split_whitespace();
    Some(seconds(fields.next()?)? + seconds(fields.next()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_takes_each_place_in_turn() {
        use Security::*;
        let modes = [Plaintext, Mtls, Encrypted];
        assert_eq!(rotated(&modes, 1), [Plaintext, Mtls, Encrypted]);
        assert_eq!(rotated(&modes, 2), [Mtls, Encrypted, Plaintext]);
        assert_eq!(rotated(&modes, 3), [Encrypted, Plaintext, Mtls]);
        assert_eq!(rotated(&modes, 4), modes);
    }

    #[test]
    fn reads_the_childrens_line_of_times() {
        assert_eq!(children_cpu("0m0.001s 0m0.002s\n0m1.500s 1m0.250s\n"), Some(61.75));
        assert_eq!(children_cpu("0m0.001s 0m0.002s\n"), None);
    }

    #[test]
    fn medians_of_every_field() {
        let run = |run, x: f64| P2pRun {
            run,
            mode: Security::Mtls,
            curl_mib_s: x,
            curl_cpu_s_per_gib: x,
            p2p_mib_s: x,
            child_cpu_s_per_gib: x,
            child_user_s_per_gib: x,
            parent_cpu_s_per_gib: x,
            parent_user_s_per_gib: x,
        };
        let encrypted = |n, x: f64| P2pRun { mode: Security::Encrypted, ..run(n, x) };
        let runs =
            vec![run(1, 3.0), encrypted(1, 10.0), run(2, 1.0), encrypted(2, 30.0), run(3, 2.0), encrypted(3, 20.0)];
        let report = P2pReport::new(1 << 30, runs, true);
        let [m, e] = &report.medians[..] else { panic!("a median per mode: {:?}", report.medians) };
        assert_eq!((m.mode, m.curl_mib_s, m.parent_user_s_per_gib), (Security::Mtls, 2.0, 2.0));
        assert_eq!((e.mode, e.p2p_mib_s), (Security::Encrypted, 20.0));
        assert!(report.markdown().contains("| median | mtls | 2.0 | 2.00 | 2.0 | 2.00 (2.00) | 2.00 (2.00) |"));
        assert!(P2pReport::new(1, Vec::new(), false).medians.is_empty());
    }
}
