//! `darter-bench`: Darter's benchmarks (see `docs/benchmarks.md`).
//!
//! Parses arguments and hands over to the `darter_bench` library; the swarm's
//! flags are in `swarm.rs` next to this file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use darter_bench::backsource::{self, BacksourceConfig};
use darter_bench::manager;
use testkit::size::parse_size;

mod swarm;

#[derive(Parser)]
#[command(name = "darter-bench", about = "Darter benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// dfget back-to-source download vs curl from the same local origin.
    Backsource(BacksourceArgs),
    /// Serve a file from the test origin until Ctrl-C (for profiling by hand).
    Origin(OriginArgs),
    /// The registry mirror: time to first byte of a cold blob, and a warm blob's
    /// throughput through the mirror vs straight from the registry (curl both sides).
    Mirror(MirrorArgs),
    /// One parent and one child on loopback: throughput and CPU per GiB of
    /// both (what a piece transfer costs), against curl from the same origin.
    P2p(P2pArgs),
    /// The manager: ListSchedulers (gRPC) and GET /api/v1/clusters (REST)
    /// requests per second and latency, on SQLite, PostgreSQL or MySQL.
    Manager(manager::ManagerArgs),
    /// The swarm: N peers in network namespaces on shaped links, Darter against
    /// the fluid bound, N parallel curl and a BitTorrent swarm (docs/benchmarks.md).
    Swarm(swarm::SwarmArgs),
}

/// What every single-node benchmark takes.
#[derive(clap::Args)]
struct RunArgs {
    /// File size: 1GiB, 64MiB, 300KiB or plain bytes.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Runs (each with fresh daemons).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// curl binary.
    #[arg(long, default_value = "curl")]
    curl: PathBuf,
    /// Directory for a scratch dir (removed at the end) and the JSON result.
    #[arg(long, default_value = "/tmp")]
    workdir: PathBuf,
    /// Where to write the JSON result [default: WORKDIR/<benchmark>.json].
    #[arg(long)]
    json: Option<PathBuf>,
    /// Kill any single download after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

impl RunArgs {
    fn download_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Prints the report's Markdown and writes its JSON (`name.json` in the
    /// workdir unless `--json` says where).
    fn publish(&self, name: &str, markdown: &str, report: &impl serde::Serialize) -> anyhow::Result<()> {
        print!("{markdown}");
        let path = self.json.clone().unwrap_or_else(|| self.workdir.join(format!("{name}.json")));
        std::fs::write(&path, serde_json::to_string_pretty(report)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        println!("json: {}", path.display());
        Ok(())
    }
}

#[derive(clap::Args)]
struct P2pArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Directory with the scheduler, dfdaemon and dfget binaries [default: next to darter-bench].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// How the members talk, each measured in every run, interleaved:
    /// plaintext (development mode, the baseline), mtls (mutual TLS and piece
    /// grants, members' certificates from files) and encrypted (the same with
    /// `upload.encrypt`); comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "mtls")]
    security: Vec<darter_bench::p2p::Security>,
    /// The same as `--security plaintext`.
    #[arg(long, conflicts_with = "security")]
    plaintext: bool,
}

#[derive(clap::Args)]
struct OriginArgs {
    /// File to serve at /<file name>.
    file: PathBuf,
    /// Print the body bytes sent when stopped.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct BacksourceArgs {
    #[command(flatten)]
    run: RunArgs,
    /// dfdaemon binary [default: next to darter-bench].
    #[arg(long)]
    dfdaemon: Option<PathBuf>,
    /// dfget binary [default: next to darter-bench].
    #[arg(long)]
    dfget: Option<PathBuf>,
    /// Only run curl (checks the harness without dfget).
    #[arg(long)]
    curl_only: bool,
}

#[derive(clap::Args)]
struct MirrorArgs {
    #[command(flatten)]
    run: RunArgs,
    /// dfdaemon binary [default: next to darter-bench].
    #[arg(long)]
    dfdaemon: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Backsource(args) => backsource_cmd(args).await,
        Cmd::Origin(args) => origin_cmd(args).await,
        Cmd::Mirror(args) => mirror_cmd(args).await,
        Cmd::P2p(args) => p2p_cmd(args).await,
        Cmd::Manager(args) => manager::run(args).await,
        Cmd::Swarm(args) => swarm::run(args, exe_dir()?).await,
    }
}

fn exe_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()
        .context("locate darter-bench executable")?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default())
}

async fn mirror_cmd(args: MirrorArgs) -> anyhow::Result<()> {
    let r = &args.run;
    let cfg = darter_bench::mirror::MirrorConfig {
        size: r.size,
        runs: r.runs,
        dfdaemon: args.dfdaemon.clone().unwrap_or(exe_dir()?.join("dfdaemon")),
        curl: r.curl.clone(),
        workdir: r.workdir.clone(),
        download_timeout: r.download_timeout(),
    };
    let report = darter_bench::mirror::run(&cfg).await?;
    r.publish("mirror", &report.markdown(), &report)
}

async fn p2p_cmd(args: P2pArgs) -> anyhow::Result<()> {
    let r = &args.run;
    let cfg = darter_bench::p2p::P2pBenchConfig {
        size: r.size,
        runs: r.runs,
        bin_dir: match args.bin_dir.clone() {
            Some(dir) => dir,
            None => exe_dir()?,
        },
        curl: r.curl.clone(),
        workdir: r.workdir.clone(),
        download_timeout: r.download_timeout(),
        modes: if args.plaintext { vec![darter_bench::p2p::Security::Plaintext] } else { args.security.clone() },
    };
    let report = darter_bench::p2p::run(&cfg).await?;
    r.publish("p2p", &report.markdown(), &report)
}

async fn backsource_cmd(args: BacksourceArgs) -> anyhow::Result<()> {
    let (r, exe_dir) = (&args.run, exe_dir()?);
    let cfg = BacksourceConfig {
        size: r.size,
        runs: r.runs,
        dfdaemon: args.dfdaemon.clone().unwrap_or_else(|| exe_dir.join("dfdaemon")),
        dfget: args.dfget.clone().unwrap_or_else(|| exe_dir.join("dfget")),
        curl: r.curl.clone(),
        workdir: r.workdir.clone(),
        curl_only: args.curl_only,
        download_timeout: r.download_timeout(),
    };
    let report = backsource::run(&cfg).await?;
    r.publish("backsource", &report.markdown(), &report)
}

async fn origin_cmd(args: OriginArgs) -> anyhow::Result<()> {
    let name = args.file.file_name().context("file has no name")?.to_string_lossy().into_owned();
    let origin = testkit::origin::Origin::start().await;
    origin.add(&format!("/{name}"), testkit::origin::Content::File(args.file.clone()), Default::default());
    println!("{}", origin.url(&format!("/{name}")));
    tokio::signal::ctrl_c().await?;
    if !args.quiet {
        eprintln!("origin sent {} body bytes", origin.total_body_bytes());
    }
    Ok(())
}
