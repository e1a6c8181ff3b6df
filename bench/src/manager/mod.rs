//! `darter-bench manager`: requests per second and latency percentiles of the
//! manager's `ListSchedulers` (gRPC) and `GET /api/v1/clusters` (REST), served
//! by the real `manager` binary on SQLite, PostgreSQL or MySQL/MariaDB.
//!
//! Setup: a fresh database (a SQLite file in a scratch directory, or a
//! `darter_bench_<random>` database created on the server and dropped at the
//! end, also on error or Ctrl-C); the manager on loopback (testkit's
//! launcher); root
//! sign-in and a personal access token over REST; `--clusters` clusters
//! (cluster i scoped to `10.i.0.0/16`), each with one scheduler registered
//! over gRPC and kept active by a keepalive stream (one message every 2 s).
//!
//! Then three phases, each a closed loop (`--concurrency` workers, each
//! sending its next request when the previous one is answered) for
//! `--warmup` plus `--duration`, of which only the duration is measured:
//!
//! 1. `ListSchedulers` from `--peers` distinct peers in turn (IPs spread over
//!    the clusters' CIDRs): after the first pass, inside the warm-up, answers
//!    come from the manager's cache;
//! 2. `GET /api/v1/clusters` with the token: authentication (token and user
//!    looked up) and the cluster list, from the database every time;
//! 3. `ListSchedulers` from a new peer every request: every answer is
//!    matched against the clusters read from the database (the uncached path).
//!
//! Every gRPC answer is checked (the peer's cluster, with a scheduler), every
//! REST answer must be `200` with a JSON list. More than 1% failed requests in
//! any phase, or the manager exiting, fails the run.
//!
//! Layout: [`database`], [`server`] and [`setup`] before the load; [`load`]
//! (the phases and their requests) with [`latency`] (samples and
//! percentiles); [`report`] (the table, the JSON, the pass/fail check).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use testkit::dfdaemon::sibling_binary;

use database::Database;
use load::{Load, Peer, get_clusters, list_schedulers};
use report::{Machine, Report, load_average};
use server::Server;
use setup::{Setup, connect_all};

mod database;
mod latency;
mod load;
mod report;
mod server;
mod setup;

/// Most clusters: cluster i is scoped to `10.i.0.0/16`.
const MAX_CLUSTERS: u32 = 256;

/// `darter-bench manager` arguments.
#[derive(clap::Args, Debug)]
pub struct ManagerArgs {
    /// `sqlite` (a scratch file), `postgres` ($DARTER_TEST_POSTGRES_URL, else
    /// postgres://postgres@127.0.0.1:5432/test), `mysql` ($DARTER_TEST_MYSQL_URL,
    /// else mysql://root@127.0.0.1:3306/test), or a URL. On a PostgreSQL or
    /// MySQL server a fresh database `darter_bench_<random>` is created and
    /// dropped at the end; a sqlite:// URL is used as it is.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Measured time per phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before each phase's measured time, not measured.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Requests in flight (workers, each waiting for its answer before the next request).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// gRPC connections (HTTP/2) the workers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Clusters to create (cluster i scoped to 10.i.0.0/16), one scheduler each.
    #[arg(long, default_value_t = 50)]
    clusters: u32,
    /// Distinct peers asking ListSchedulers in turn (cached after the first
    /// pass); 0: a new peer every request (then there is no separate uncached phase).
    #[arg(long, default_value_t = 1000)]
    peers: u32,
    /// Skip the phase where every ListSchedulers comes from a new peer.
    #[arg(long)]
    no_uncached: bool,
    /// Redis URL for the manager's ListSchedulers cache (its --redis-url)
    /// [default: the manager's in-process cache].
    #[arg(long)]
    redis: Option<String>,
    /// manager binary [default: next to darter-bench].
    #[arg(long)]
    manager: Option<PathBuf>,
    /// A request not answered within this counts as failed.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the benchmark: prints the table, writes the JSON, and fails when a
/// phase had more than 1% failed requests or none that succeeded.
pub async fn run(args: ManagerArgs) -> anyhow::Result<()> {
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!((1..=MAX_CLUSTERS).contains(&args.clusters), "--clusters must be 1 to {MAX_CLUSTERS}");
    ensure!(!args.duration.is_zero(), "--duration must be greater than 0");
    darter_common::install_crypto_provider();
    let load_before = load_average();
    let manager_bin = match &args.manager {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => bail!("manager not found at {}", path.display()),
        None => sibling_binary("manager")?,
    };
    let scratch = tempfile::Builder::new().prefix("darter-bench-manager-").tempdir().context("create scratch dir")?;
    let db = Database::create(&args.database).await?;
    eprintln!("database: {} ({})", db.backend.name(), db.describe());

    let outcome = tokio::select! {
        outcome = bench(&args, &manager_bin, &db, scratch.path(), load_before) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The manager was killed when `bench` returned (or was dropped).
    if let Err(e) = db.drop_database().await {
        eprintln!("warning: {e:#}");
    }
    let report = outcome?;

    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        println!("json: {}", path.display());
    }
    report.check()
}

/// Everything between a fresh database and the figures; the manager is
/// killed when this returns.
async fn bench(
    args: &ManagerArgs,
    bin: &Path,
    db: &Database,
    scratch: &Path,
    load_before: Option<f64>,
) -> anyhow::Result<Report> {
    let password = format!("{:032x}", rand::random::<u128>());
    eprintln!("starting {}", bin.display());
    let manager = Server::start(bin, scratch, &db.url, args.redis.as_deref(), &password).await?;
    let setup = Setup::new(&manager, &password, args.clusters).await.map_err(|e| manager.explain(e))?;

    let channels = connect_all(manager.grpc, args.connections).await?;
    let load = Load { args, manager: &manager, setup: &setup };
    let mut rows = Vec::new();
    if args.peers > 0 {
        let peers: Arc<Vec<Peer>> =
            Arc::new((0..u64::from(args.peers)).map(|i| Peer::nth("peer", i, &setup.cluster_ids)).collect());
        let endpoint = format!("gRPC ListSchedulers, {} peers in turn", args.peers);
        let row = load
            .phase(
                endpoint,
                true,
                list_schedulers(&channels, move |n| peers[(n % peers.len() as u64) as usize].clone()),
            )
            .await?;
        rows.push(row);
    }
    rows.push(load.phase("REST GET /api/v1/clusters".into(), false, get_clusters(&manager, &setup.token)?).await?);
    if args.peers == 0 || !args.no_uncached {
        let ids = setup.cluster_ids.clone();
        let endpoint = "gRPC ListSchedulers, a new peer every request".to_owned();
        let row =
            load.phase(endpoint, true, list_schedulers(&channels, move |n| Peer::nth("new-peer", n, &ids))).await?;
        rows.push(row);
    }
    manager.check_alive()?;

    Ok(Report {
        benchmark: "manager",
        backend: db.backend.name(),
        database: db.describe(),
        cache: if args.redis.is_some() { "redis" } else { "in-process" },
        clusters: args.clusters,
        peers: args.peers,
        concurrency: args.concurrency,
        grpc_connections: args.connections,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        machine: Machine::probe(db.backend, load_before),
        rows,
    })
}
