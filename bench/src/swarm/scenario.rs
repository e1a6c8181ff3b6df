//! The runs: Darter in the cold, warm and churn scenarios, and the
//! client-server baseline (N parallel `curl` from the origin), each on fresh
//! random content, timed from one common start, every copy checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::bound::BoundInputs;
use super::calibrate::Calibration;
use super::cluster::{SwarmCluster, read_metric};
use super::downloads::{Finished, run_all};
use super::netns::{LinkBytes, Node};
use super::progress::{ProgressSampler, first_byte_seconds};
use super::result::{PeerResult, RunReport};
use super::usage::{MachineCpu, Sampler, rss_bytes};
use testkit::origin::{Behavior, Content};

/// How long the daemons are left alone after a run before their idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
/// How often the churn watcher reads the victims' progress.
const CHURN_POLL: Duration = Duration::from_millis(100);
/// How often each Darter peer's progress is read from its metrics.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Per peer: bytes of pieces fetched after they were already stored.
const DUPLICATE_BYTES: &str = "dfdaemon_duplicate_piece_bytes_total";

/// Which scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Every peer starts at once, nothing cached anywhere.
    Cold,
    /// One peer already holds the content; the others start at once.
    Warm,
    /// Cold, and a quarter of the peers are killed at half progress.
    Churn,
}

impl Scenario {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cold => "cold",
            Scenario::Warm => "warm",
            Scenario::Churn => "churn",
        }
    }
}

/// What every run needs.
pub struct RunContext<'a> {
    /// Profile name.
    pub profile: &'a str,
    /// Content size.
    pub size: u64,
    /// Measured link rates.
    pub calibration: &'a Calibration,
    /// Scratch space for content and outputs.
    pub work: &'a Path,
    /// Longest any download may take.
    pub timeout: Duration,
}

impl RunContext<'_> {
    /// The bound's inputs for `downloaders` peers, with `extra_sources`
    /// peers holding the content besides the origin (measured rates).
    pub fn bound(&self, downloaders: usize, extra_sources: usize) -> BoundInputs {
        let c = self.calibration;
        BoundInputs {
            size_bytes: self.size,
            source_up_bps: c.origin_up_bps + extra_sources as f64 * c.peer_up_bps,
            peer_up_bps: c.peer_up_bps,
            peer_down_bps: c.peer_down_bps,
            downloaders,
        }
    }

    /// Writes fresh random content named `tag` and returns its path and sha256.
    async fn content(&self, tag: &str) -> anyhow::Result<(PathBuf, String)> {
        let path = self.work.join(format!("{tag}.bin"));
        let (p, size) = (path.clone(), self.size);
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
        let digest = tokio::task::spawn_blocking(move || testkit::write_random_file(&p, size, seed)).await??;
        Ok((path, digest))
    }
}

/// Runs Darter with `n` peers in `scenario` on fresh peers and fresh content.
pub async fn darter(
    cluster: &mut SwarmCluster,
    ctx: &RunContext<'_>,
    n: usize,
    scenario: Scenario,
) -> anyhow::Result<RunReport> {
    let tag = format!("{}-n{n}-{}", ctx.profile, scenario.name());
    let (content, digest) = ctx.content(&tag).await?;
    let url_path = format!("/{tag}.bin");
    cluster.origin.add(&url_path, Content::File(content.clone()), origin_behavior(cluster));
    let url = cluster.url(&url_path);
    cluster.fresh_peers(n).await?;
    let piece_length = darter_common::piece::piece_length_for(Some(ctx.size));

    let mut timed: Vec<usize> = (0..n).collect();
    let mut report = match scenario {
        Scenario::Warm => {
            anyhow::ensure!(n >= 2, "the warm scenario needs at least 2 peers");
            let out = ctx.work.join(format!("{tag}-prefetch.bin"));
            let one = vec![dfget(cluster, 0, &url, &out)];
            let (_, done) = run_all(one, &[CancellationToken::new()], ctx.timeout, |_| {}).await;
            if let Some(e) = &done[0].error {
                anyhow::bail!("warming peer 0 failed: {e}");
            }
            let _ = std::fs::remove_file(out);
            timed.remove(0);
            let mut r = RunReport::new(ctx.profile, "darter", "warm", ctx.bound(n - 1, 1), piece_length);
            // N names the swarm (peer 0 included); the bound counts N - 1 downloaders.
            r.peers = n;
            r.notes.push("peer 0 (and the seed) hold the content; the bound counts peer 0's upload".into());
            r
        }
        Scenario::Cold | Scenario::Churn => {
            RunReport::new(ctx.profile, "darter", scenario.name(), ctx.bound(n, 0), piece_length)
        }
    };

    let pids: Vec<u32> = timed.iter().map(|&i| cluster.peers[i].as_ref().and_then(|p| p.pid()).unwrap_or(0)).collect();
    let outputs: Vec<PathBuf> = timed.iter().map(|i| ctx.work.join(format!("{tag}-peer-{i}.bin"))).collect();
    let commands = timed.iter().zip(&outputs).map(|(&i, out)| dfget(cluster, i, &url, out)).collect();
    let tokens: Vec<CancellationToken> = timed.iter().map(|_| CancellationToken::new()).collect();
    let nodes: Vec<Node> = timed.iter().map(|&i| cluster.peer_node(i).clone()).collect();
    let links_before: Vec<Option<LinkBytes>> = nodes.iter().map(Node::link_bytes).collect();
    let origin_before = cluster.origin.total_body_bytes();
    let origin_link_before = cluster.origin_node().link_bytes();
    let sampler = Sampler::start(pids.clone(), Duration::from_millis(100));
    let metrics: Vec<SocketAddr> = timed.iter().map(|&i| cluster.metrics_addr(i)).collect();
    let progress = ProgressSampler::start(metrics.clone(), PROGRESS_INTERVAL);
    let cpu = MachineCpu::start();

    let churn = (scenario == Scenario::Churn).then(|| {
        let victims: Vec<usize> = (0..(timed.len() / 4).max(1)).collect();
        report.notes.push(format!("peers {victims:?} killed (SIGKILL, daemon and dfget) at half progress"));
        let watch = victims.iter().map(|&v| (cluster.metrics_addr(timed[v]), pids[v], tokens[v].clone())).collect();
        tokio::spawn(kill_at_half(watch, ctx.size))
    });
    let (_, finished) = run_all(commands, &tokens, ctx.timeout, |_| {}).await;
    if let Some(watcher) = churn {
        watcher.abort();
    }
    let usage = sampler.stop();
    let timelines = progress.stop();
    let duplicates = futures::future::join_all(metrics.iter().map(|&m| read_metric(m, DUPLICATE_BYTES))).await;
    report.machine_cpu_share = cpu.busy_share();
    report.machine_steal_share = cpu.steal_share();
    report.origin_bytes = cluster.origin.total_body_bytes() - origin_before;
    report.origin_counted = "body bytes the origin server sent".into();
    report.origin_link_sent_bytes = sent(cluster.origin_node(), origin_link_before);
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle: Vec<Option<u64>> = pids.iter().map(|&p| rss_bytes(p).map(|(rss, _)| rss)).collect();

    let checks = check_outputs(&outputs, &finished, &digest).await;
    for (k, &i) in timed.iter().enumerate() {
        let mut f = finished[k].clone();
        if let Err(e) = &checks[k] {
            f = Finished { seconds: None, error: Some(e.clone()), killed: f.killed };
        }
        report.per_peer.push(PeerResult {
            peer: i,
            seconds: f.seconds,
            killed: f.killed,
            error: f.error,
            cpu_seconds: usage[k].map(|u| u.cpu_seconds),
            user_seconds: usage[k].map(|u| u.user_seconds),
            peak_rss_bytes: usage[k].map(|u| u.peak_rss_bytes),
            idle_rss_bytes: idle[k],
            wire_received_bytes: received(&nodes[k], links_before[k]),
            wire_received_packets: received_packets(&nodes[k], links_before[k]),
            first_byte_seconds: first_byte_seconds(&timelines[k]),
            duplicate_bytes: duplicates[k].map(|b| b as u64),
            progress: timelines[k].clone(),
        });
    }
    report.settle();
    for out in &outputs {
        let _ = std::fs::remove_file(out);
    }
    let _ = std::fs::remove_file(&content);
    Ok(report)
}

/// The client-server baseline: `n` parallel `curl` from the origin, each in
/// its peer's namespace.
pub async fn curl(cluster: &SwarmCluster, ctx: &RunContext<'_>, n: usize) -> anyhow::Result<RunReport> {
    let tag = format!("{}-n{n}-curl", ctx.profile);
    let (content, digest) = ctx.content(&tag).await?;
    let url_path = format!("/{tag}.bin");
    cluster.origin.add(&url_path, Content::File(content.clone()), origin_behavior(cluster));
    let url = cluster.url(&url_path);
    let piece_length = darter_common::piece::piece_length_for(Some(ctx.size));
    let mut report = RunReport::new(ctx.profile, "curl", "cold", ctx.bound(n, 0), piece_length);
    let nodes: Vec<Node> = (0..n).map(|i| cluster.peer_node(i).clone()).collect();
    let outputs: Vec<PathBuf> = (0..n).map(|i| ctx.work.join(format!("{tag}-peer-{i}.bin"))).collect();
    let commands = nodes
        .iter()
        .zip(&outputs)
        .map(|(node, out)| {
            let mut c = node.command("curl");
            c.args(["-sS", "--fail", "-o"]).arg(out).arg(&url);
            c
        })
        .collect();
    let tokens: Vec<CancellationToken> = (0..n).map(|_| CancellationToken::new()).collect();
    let links_before: Vec<Option<LinkBytes>> = nodes.iter().map(Node::link_bytes).collect();
    let origin_before = cluster.origin.total_body_bytes();
    let origin_link_before = cluster.origin_node().link_bytes();
    let cpu = MachineCpu::start();
    let sampler = std::sync::Mutex::new(None);
    let (_, finished) = run_all(commands, &tokens, ctx.timeout, |pids| {
        *sampler.lock().unwrap() = Some(Sampler::start(pids.to_vec(), Duration::from_millis(100)));
    })
    .await;
    let usage = sampler.into_inner().unwrap().map(Sampler::stop).unwrap_or_default();
    report.machine_cpu_share = cpu.busy_share();
    report.machine_steal_share = cpu.steal_share();
    report.origin_bytes = cluster.origin.total_body_bytes() - origin_before;
    report.origin_counted = "body bytes the origin server sent".into();
    report.origin_link_sent_bytes = sent(cluster.origin_node(), origin_link_before);
    let checks = check_outputs(&outputs, &finished, &digest).await;
    for (i, f) in finished.into_iter().enumerate() {
        let error = f.error.or_else(|| checks[i].clone().err());
        let u = usage.get(i).copied().flatten();
        report.per_peer.push(PeerResult {
            peer: i,
            seconds: f.seconds.filter(|_| checks[i].is_ok()),
            error,
            cpu_seconds: u.map(|u| u.cpu_seconds),
            user_seconds: u.map(|u| u.user_seconds),
            peak_rss_bytes: u.map(|u| u.peak_rss_bytes),
            wire_received_bytes: received(&nodes[i], links_before[i]),
            wire_received_packets: received_packets(&nodes[i], links_before[i]),
            ..Default::default()
        });
    }
    report.settle();
    for out in &outputs {
        let _ = std::fs::remove_file(out);
    }
    let _ = std::fs::remove_file(&content);
    Ok(report)
}

/// In loopback mode the origin paces each response at U (the kernel shapes nothing).
fn origin_behavior(cluster: &SwarmCluster) -> Behavior {
    Behavior { rate_limit: cluster.origin_pace(), ..Behavior::default() }
}

fn dfget(cluster: &SwarmCluster, i: usize, url: &str, out: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(cluster.dfget());
    c.arg(url).arg("-O").arg(out).arg("--socket").arg(cluster.socket(i)).arg("--no-progress");
    c
}

pub(super) fn received(node: &Node, before: Option<LinkBytes>) -> Option<u64> {
    Some(node.link_bytes()?.received - before?.received)
}

pub(super) fn received_packets(node: &Node, before: Option<LinkBytes>) -> Option<u64> {
    Some(node.link_bytes()?.received_packets - before?.received_packets)
}

fn sent(node: &Node, before: Option<LinkBytes>) -> Option<u64> {
    Some(node.link_bytes()?.sent - before?.sent)
}

/// Checks the sha256 of every output whose download succeeded.
async fn check_outputs(outputs: &[PathBuf], finished: &[Finished], digest: &str) -> Vec<Result<(), String>> {
    let checks = outputs.iter().zip(finished).map(|(out, f)| {
        let (out, ok, digest) = (out.clone(), f.seconds.is_some(), digest.to_string());
        tokio::task::spawn_blocking(move || {
            if !ok {
                return Ok(());
            }
            match testkit::sha256_file(&out) {
                Ok(d) if d == digest => Ok(()),
                Ok(d) => Err(format!("{} has sha256 {d}, not {digest}", out.display())),
                Err(e) => Err(format!("read {}: {e}", out.display())),
            }
        })
    });
    futures::future::join_all(checks).await.into_iter().map(|r| r.unwrap_or_else(|e| Err(e.to_string()))).collect()
}

/// Kills each victim (daemon by pid, its client by its token) once it has
/// downloaded half of `size`.
async fn kill_at_half(victims: Vec<(std::net::SocketAddr, u32, CancellationToken)>, size: u64) {
    let mut left = victims;
    while !left.is_empty() {
        let mut still = Vec::new();
        for (addr, pid, token) in left {
            let mut got = 0.0;
            for source in ["peer", "origin"] {
                let metric = format!("dfdaemon_download_bytes_total{{source=\"{source}\"}}");
                got += read_metric(addr, &metric).await.unwrap_or(0.0);
            }
            if got >= size as f64 / 2.0 {
                tracing::info!(pid, "churn: killing a peer at half progress");
                let _ = testkit::process::signal(pid, "KILL");
                token.cancel();
            } else {
                still.push((addr, pid, token));
            }
        }
        left = still;
        tokio::time::sleep(CHURN_POLL).await;
    }
}

/// Context for errors about a run.
pub fn describe(profile: &str, n: usize, what: &str) -> String {
    format!("profile {profile}, {n} peers, {what}")
}

impl SwarmCluster {
    /// Checks a run's preconditions and gives context to its errors.
    pub async fn run_darter(
        &mut self,
        ctx: &RunContext<'_>,
        n: usize,
        scenario: Scenario,
    ) -> anyhow::Result<RunReport> {
        darter(self, ctx, n, scenario).await.with_context(|| describe(ctx.profile, n, scenario.name()))
    }
}
