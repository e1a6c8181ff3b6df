//! `darter-bench swarm`: arguments of the swarm benchmark; the work is in
//! `darter_bench::swarm::bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use darter_bench::swarm::bench::{self, Baseline, BenchConfig};
use darter_bench::swarm::profile::Profile;
use darter_bench::swarm::scenario::Scenario;

/// The swarm benchmark: N peers in network namespaces on shaped links.
#[derive(clap::Args)]
pub struct SwarmArgs {
    /// Profiles: A (64 MiB; U 100, u 50, d 100 Mbit/s), B (1 GiB; U 200, u 100, d 200 Mbit/s).
    #[arg(long, value_delimiter = ',', default_value = "A")]
    profile: Vec<String>,
    /// Peer counts.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    peers: Vec<usize>,
    /// Darter scenarios (warm and churn need 4 peers or more).
    #[arg(long, value_delimiter = ',', default_value = "cold,warm,churn")]
    scenarios: Vec<Scenario>,
    /// Baselines run in the cold scenario ("none" for none).
    #[arg(long, value_delimiter = ',', default_value = "curl,bittorrent", value_parser = parse_baseline)]
    baselines: Vec<Option<Baseline>>,
    /// Skip the curl baseline above this many peers (it takes N times the
    /// single download: 11 minutes for profile B with 16 peers).
    #[arg(long)]
    curl_max_peers: Option<usize>,
    /// Content size instead of the profile's (smoke runs).
    #[arg(long, value_parser = testkit::size::parse_size)]
    size: Option<u64>,
    /// Output directory: runs/*.json, summary.md, summary.json, swarm-<profile>.png, logs.
    #[arg(long, default_value = "target/swarm-bench")]
    out: PathBuf,
    /// Kill any download not done after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Run on loopback even where network namespaces work.
    #[arg(long)]
    loopback: bool,
    /// Seconds of link calibration.
    #[arg(long, default_value_t = 3)]
    calibrate_secs: u64,
    /// Extra dfdaemon setting as KEY=VALUE (e.g. DFDAEMON__P2P__CONCURRENCY=32); repeatable.
    #[arg(long = "daemon-env", value_parser = parse_env)]
    daemon_env: Vec<(String, String)>,
    /// Extra scheduler setting as KEY=VALUE; repeatable.
    #[arg(long = "scheduler-env", value_parser = parse_env)]
    scheduler_env: Vec<(String, String)>,
    /// Control connections in plaintext (development mode), the baseline the
    /// cost of mutual TLS is measured against. Default: mutual TLS with
    /// members enrolled by join tokens, as a real cluster runs.
    #[arg(long)]
    plaintext: bool,
}

fn parse_baseline(s: &str) -> Result<Option<Baseline>, String> {
    match s {
        "none" => Ok(None),
        "curl" => Ok(Some(Baseline::Curl)),
        "bittorrent" | "bt" => Ok(Some(Baseline::Bittorrent)),
        other => Err(format!("unknown baseline {other:?} (curl, bittorrent, none)")),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Runs the benchmark until done or interrupted (Ctrl-C or SIGTERM tear
/// everything down: processes, namespaces, the bridge).
pub async fn run(args: SwarmArgs, bin_dir: PathBuf) -> anyhow::Result<()> {
    for name in ["manager", "scheduler", "dfdaemon", "dfget"] {
        anyhow::ensure!(
            bin_dir.join(name).is_file(),
            "{name} not found in {}: build with `cargo build --release --workspace --bins`",
            bin_dir.display()
        );
    }
    anyhow::ensure!(args.peers.iter().all(|&n| n >= 1), "--peers must be at least 1");
    let mut profiles = Vec::new();
    for p in &args.profile {
        let mut profile = Profile::named(p)?;
        if let Some(size) = args.size {
            profile.size = size;
        }
        profiles.push(profile);
    }
    let config = BenchConfig {
        profiles,
        peers: args.peers,
        scenarios: args.scenarios,
        baselines: args.baselines.into_iter().flatten().collect(),
        curl_max_peers: args.curl_max_peers,
        out: args.out.clone(),
        bin_dir,
        timeout: Duration::from_secs(args.timeout_secs),
        loopback: args.loopback,
        calibrate: Duration::from_secs(args.calibrate_secs.max(1)),
        daemon_env: args.daemon_env,
        scheduler_env: args.scheduler_env,
        plaintext: args.plaintext,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        r = bench::run(&config) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; everything was torn down")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated; everything was torn down")),
    };
    let runs = result.context("swarm benchmark")?;
    println!("\n{} runs; summary: {}", runs.len(), args.out.join("summary.md").display());
    print!("{}", std::fs::read_to_string(args.out.join("summary.md")).unwrap_or_default());
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.system == "darter" && r.failures() > 0)
        .map(|r| format!("{} N={} {} {}", r.profile, r.peers, r.scenario, r.system))
        .collect();
    anyhow::ensure!(failed.is_empty(), "Darter peers failed in: {}", failed.join(", "));
    Ok(())
}
