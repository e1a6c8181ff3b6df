//! The whole swarm benchmark: per profile, build the network for the largest
//! peer count, calibrate it, start Darter on it, and for every peer count run
//! the scenarios and the baselines; after every run write its JSON, the
//! Markdown summary, the targets and the chart, so an interrupted benchmark
//! keeps what it measured.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::bittorrent::{self, BtRun};
use super::calibrate::{Calibration, calibrate};
use super::chart::{Panel, Series, render_png};
use super::cluster::{ClusterConfig, SwarmCluster};
use super::netns::{Mode, Topology};
use super::profile::Profile;
use super::result::{PeerResult, RunReport, markdown};
use super::scenario::{self, RunContext, Scenario};
use super::targets;
use super::usage::{MachineCpu, Sampler};

/// The makespan target drawn on the chart.
const TARGET_RATIO: f64 = 1.25;

/// A baseline system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// N parallel curl from the origin.
    Curl,
    /// aria2c + opentracker + mktorrent at Darter's piece length.
    Bittorrent,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Profiles, in order.
    pub profiles: Vec<Profile>,
    /// Peer counts, in order.
    pub peers: Vec<usize>,
    /// Darter scenarios.
    pub scenarios: Vec<Scenario>,
    /// Baselines (cold scenario).
    pub baselines: Vec<Baseline>,
    /// No curl baseline above this many peers.
    pub curl_max_peers: Option<usize>,
    /// Output directory (JSON, Markdown, PNG, logs).
    pub out: PathBuf,
    /// Directory holding the Darter binaries.
    pub bin_dir: PathBuf,
    /// Longest any one download may take.
    pub timeout: Duration,
    /// Use the loopback fallback even where namespaces work.
    pub loopback: bool,
    /// Seconds of calibration (after one second of warm-up).
    pub calibrate: Duration,
    /// Extra dfdaemon environment (tuning experiments).
    pub daemon_env: Vec<(String, String)>,
    /// Extra scheduler environment.
    pub scheduler_env: Vec<(String, String)>,
    /// Control connections in plaintext instead of mutual TLS.
    pub plaintext: bool,
}

/// Runs everything; returns every run's report.
pub async fn run(config: &BenchConfig) -> anyhow::Result<Vec<RunReport>> {
    std::fs::create_dir_all(config.out.join("runs"))?;
    let mut all = Vec::new();
    for profile in &config.profiles {
        run_profile(config, profile, &mut all).await.with_context(|| format!("profile {}", profile.name))?;
    }
    Ok(all)
}

async fn run_profile(config: &BenchConfig, profile: &Profile, all: &mut Vec<RunReport>) -> anyhow::Result<()> {
    let max_peers = config.peers.iter().copied().max().unwrap_or(1);
    let topology = if config.loopback {
        Topology::loopback(max_peers, "asked for with --loopback".into())
    } else {
        Topology::create(max_peers, &profile.rates)?
    };
    if let Mode::Loopback { reason } = &topology.mode {
        println!("FALLBACK: network namespaces unavailable ({reason}); running on loopback.");
        println!("  Daemon uploads and origin responses are rate-limited by the processes themselves;");
        println!("  downloads are not limited; the bound uses the nominal rates.");
    }
    let work = config.out.join(format!("work-{}", profile.name));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let cluster_config = ClusterConfig {
        bin_dir: config.bin_dir.clone(),
        dir: work.join("cluster"),
        daemon_env: config.daemon_env.clone(),
        scheduler_env: config.scheduler_env.clone(),
        rates: profile.rates,
        plaintext: config.plaintext,
    };
    let mut cluster = SwarmCluster::start(&topology, cluster_config).await?;
    for &n in &config.peers {
        let calibration = link_rates(config, profile, &topology, n).await?;
        let ctx = RunContext {
            profile: &profile.name,
            size: profile.size,
            calibration: &calibration,
            work: &work,
            timeout: config.timeout,
        };
        for &s in &config.scenarios {
            if s != Scenario::Cold && n < 4 {
                println!("  skip {} with {n} peer(s): it needs at least 4", s.name());
                continue;
            }
            let mut report = cluster.run_darter(&ctx, n, s).await?;
            annotate(&mut report, &topology.mode, &calibration);
            record(config, all, report)?;
        }
        cluster.stop_peers();
        for &b in &config.baselines {
            let report = match b {
                Baseline::Curl if config.curl_max_peers.is_some_and(|max| n > max) => {
                    println!("  skip the curl baseline with {n} peers (--curl-max-peers)");
                    None
                }
                Baseline::Curl => Some(scenario::curl(&cluster, &ctx, n).await?),
                Baseline::Bittorrent => bittorrent_run(&topology, &ctx, n).await?,
            };
            if let Some(mut report) = report {
                annotate(&mut report, &topology.mode, &calibration);
                record(config, all, report)?;
            }
        }
    }
    drop(cluster);
    remove_data(&work);
    Ok(())
}

/// The rates the bound uses for `n` peers: the origin's link and the first
/// `n` peers' links calibrated together (what a run with `n` peers loads),
/// or the nominal rates on loopback.
async fn link_rates(config: &BenchConfig, profile: &Profile, t: &Topology, n: usize) -> anyhow::Result<Calibration> {
    if !matches!(t.mode, Mode::Namespaces) {
        return Ok(nominal(profile));
    }
    println!("profile {} N={n}: calibrating the links (uploads in a ring, then downloads) ...", profile.name);
    let c = calibrate(t, n, Duration::from_secs(1), config.calibrate).await?;
    println!(
        "profile {} N={n}: U {:.1} Mbit/s, u {:.1} (min {:.1}), d {:.1} (min {:.1}) measured; socket floor {} CPU s/GiB",
        profile.name,
        c.origin_up_bps / 1e6,
        c.peer_up_bps / 1e6,
        c.peer_up_min_bps / 1e6,
        c.peer_down_bps / 1e6,
        c.peer_down_min_bps / 1e6,
        c.socket_floor_cpu_s_per_gib.map_or("-".into(), |f| format!("{f:.2}")),
    );
    Ok(c)
}

/// Removes the daemons' data directories and scratch content under `work`
/// (gigabytes for profile B), keeping the logs.
fn remove_data(work: &Path) {
    let _ = std::fs::remove_dir_all(work.join("bt"));
    let Ok(dirs) = std::fs::read_dir(work.join("cluster")) else { return };
    for d in dirs.flatten() {
        let _ = std::fs::remove_dir_all(d.path().join("data"));
    }
}

/// The BitTorrent baseline, or `None` (said why) where it cannot run.
async fn bittorrent_run(t: &Topology, ctx: &RunContext<'_>, n: usize) -> anyhow::Result<Option<RunReport>> {
    if let Err(why) = bittorrent::ready() {
        println!("  skip the BitTorrent baseline: {why}");
        return Ok(None);
    }
    if !t.shaped() {
        println!("  skip the BitTorrent baseline: aria2c cannot be rate-limited like the links on loopback");
        return Ok(None);
    }
    let dir = ctx.work.join("bt");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("content.bin");
    let (f, size) = (file.clone(), ctx.size);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    let digest = tokio::task::spawn_blocking(move || testkit::write_random_file(&f, size, seed)).await??;
    let piece_length = darter_common::piece::piece_length_for(Some(ctx.size));
    let mut report = RunReport::new(ctx.profile, "bittorrent", "cold", ctx.bound(n, 0), piece_length);
    let peers = &t.peers[..n];
    let before: Vec<_> = peers.iter().map(|p| p.link_bytes()).collect();
    let origin_before = t.origin.link_bytes().map_or(0, |l| l.sent);
    let run =
        BtRun { tracker: &t.hub, seeder: &t.origin, peers, file: &file, piece_length, dir: &dir, timeout: ctx.timeout };
    let sampler: Arc<Mutex<Option<Sampler>>> = Arc::default();
    let slot = Arc::clone(&sampler);
    let cpu = MachineCpu::start();
    let outcome = bittorrent::run(&run, move |pids| {
        *slot.lock().unwrap() = Some(Sampler::start(pids.to_vec(), Duration::from_millis(100)));
    })
    .await?;
    report.machine_cpu_share = cpu.busy_share();
    report.machine_steal_share = cpu.steal_share();
    let usage = sampler.lock().unwrap().take().map(Sampler::stop).unwrap_or_default();
    report.origin_bytes = t.origin.link_bytes().map_or(0, |l| l.sent) - origin_before;
    report.origin_link_sent_bytes = Some(report.origin_bytes);
    report.origin_counted = "bytes the seeder's link sent (headers included)".into();
    for (i, done) in outcome.completion.iter().enumerate() {
        let right = outcome.sha256.get(i).cloned().flatten().is_some_and(|d| d == digest);
        let seconds = done.map(|d| d.as_secs_f64()).filter(|_| right);
        let error = match (done, right) {
            (None, _) => Some("not complete".to_string()),
            (Some(_), false) => Some("wrong sha256".to_string()),
            _ => None,
        };
        let u = usage.get(i).copied().flatten();
        report.per_peer.push(PeerResult {
            peer: i,
            seconds,
            error,
            cpu_seconds: u.map(|u| u.cpu_seconds),
            user_seconds: u.map(|u| u.user_seconds),
            peak_rss_bytes: u.map(|u| u.peak_rss_bytes),
            wire_received_bytes: super::scenario::received(&peers[i], before[i]),
            wire_received_packets: super::scenario::received_packets(&peers[i], before[i]),
            ..Default::default()
        });
    }
    report.notes.extend(outcome.errors.iter().take(3).cloned());
    report.settle();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Some(report))
}

fn nominal(profile: &Profile) -> Calibration {
    let r = profile.rates;
    Calibration {
        origin_up_bps: r.origin_up_bps as f64,
        peer_up_bps: r.peer_up_bps as f64,
        peer_up_min_bps: r.peer_up_bps as f64,
        peer_down_bps: r.peer_down_bps as f64,
        peer_down_min_bps: r.peer_down_bps as f64,
        seconds: 0.0,
        socket_floor_cpu_s_per_gib: None,
    }
}

fn annotate(report: &mut RunReport, mode: &Mode, calibration: &Calibration) {
    report.socket_floor_cpu_s_per_gib = calibration.socket_floor_cpu_s_per_gib;
    if let Mode::Loopback { .. } = mode {
        report.notes.push("loopback fallback (not shaped by the kernel)".into());
    }
}

/// Prints the run, writes its JSON and rewrites the summary, targets and charts.
fn record(config: &BenchConfig, all: &mut Vec<RunReport>, report: RunReport) -> anyhow::Result<()> {
    let name = format!("{}-n{}-{}-{}.json", report.profile, report.peers, report.scenario, report.system);
    std::fs::write(config.out.join("runs").join(name), serde_json::to_string_pretty(&report)? + "\n")?;
    let line = markdown(std::slice::from_ref(&report));
    println!("{}", line.lines().last().unwrap_or_default());
    for p in report.per_peer.iter().filter(|p| p.error.is_some()) {
        println!("    peer {}: {}", p.peer, p.error.as_deref().unwrap_or_default());
    }
    all.push(report);
    write_summary(&config.out, all)
}

/// `summary.md`, `summary.json`, `targets` and one chart per profile.
pub fn write_summary(out: &Path, runs: &[RunReport]) -> anyhow::Result<()> {
    let checks = targets::check(runs);
    let md = format!("{}\n### Targets\n\n{}", markdown(runs), targets::markdown(&checks));
    std::fs::write(out.join("summary.md"), md)?;
    let json = serde_json::json!({ "runs": runs, "targets": checks });
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    let mut profiles: Vec<&str> = runs.iter().map(|r| r.profile.as_str()).collect();
    profiles.dedup();
    for profile in profiles {
        let panels = chart_panels(runs, profile);
        let path = out.join(format!("swarm-{profile}.png"));
        if let Err(e) = render_png(&path, &format!("Profile {profile}: completion time per peer"), &panels) {
            println!("  (chart not drawn: {e:#})");
        }
    }
    Ok(())
}

/// One panel per peer count and scenario: the cold panel carries every
/// system, warm and churn Darter alone.
fn chart_panels(runs: &[RunReport], profile: &str) -> Vec<Panel> {
    let mut keys: Vec<(usize, &str)> = Vec::new();
    for r in runs.iter().filter(|r| r.profile == profile) {
        if !keys.contains(&(r.peers, r.scenario.as_str())) {
            keys.push((r.peers, r.scenario.as_str()));
        }
    }
    keys.sort_by_key(|&(n, s)| (n, ["cold", "warm", "churn"].iter().position(|x| *x == s)));
    keys.into_iter()
        .map(|(n, scenario)| {
            let members: Vec<&RunReport> =
                runs.iter().filter(|r| r.profile == profile && r.peers == n && r.scenario == scenario).collect();
            let darter = members.iter().find(|r| r.system == "darter").or(members.first()).copied();
            Panel {
                title: format!("{profile} {scenario}, N={n}"),
                t_min_secs: darter.map_or(0.0, |r| r.t_min),
                target_ratio: (scenario == "cold").then_some(TARGET_RATIO),
                series: members
                    .iter()
                    .map(|r| Series {
                        label: r.system.clone(),
                        completion_secs: r.per_peer.iter().filter_map(|p| p.seconds).collect(),
                        failed: r.failures(),
                    })
                    .collect(),
            }
        })
        .collect()
}
