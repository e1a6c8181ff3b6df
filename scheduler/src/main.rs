//! scheduler: Darter's scheduler. See `scheduler --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use darter_common::config::{Validate as _, load_or_exit};
use scheduler::config::{Config, ENV_PREFIX, SeedPeerConfig};

/// Darter's scheduler: plans which peers fetch which pieces from whom.
#[derive(Debug, Parser)]
#[command(name = "scheduler", version, about)]
struct Cli {
    /// Config file (YAML). Every field has a default; `SCHEDULER__SECTION__FIELD` env vars override it.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// gRPC address (grpc_addr).
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// Metrics and health address (metrics_addr).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Log level or filter (log.level).
    #[arg(long)]
    log_level: Option<String>,
    /// A seed peer's upload API, `IP:PORT`; repeat for several. Replaces `seed_peers` of the config file.
    #[arg(long = "seed-peer", value_name = "IP:PORT")]
    seed_peers: Vec<SocketAddr>,
    /// The manager's gRPC address, `HOST:PORT` (manager.addr): register with it and
    /// learn the cluster's seed peers from it.
    #[arg(long = "manager", value_name = "HOST:PORT")]
    manager: Option<String>,
    /// Once every listener is bound, write their addresses here as JSON
    /// (`{"pid": N, "addresses": {"grpc": "127.0.0.1:40123", ...}}`): bind port 0
    /// and read what the kernel picked.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Print the effective config as YAML and exit.
    #[arg(long)]
    print_config: bool,
}

impl Cli {
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = Vec::new();
        if let Some(a) = self.grpc_addr {
            o.push(("grpc_addr", a.to_string()));
        }
        if let Some(a) = self.metrics_addr {
            o.push(("metrics_addr", a.to_string()));
        }
        if let Some(l) = &self.log_level {
            o.push(("log.level", l.clone()));
        }
        if let Some(m) = &self.manager {
            o.push(("manager.addr", m.clone()));
        }
        o
    }
}

fn main() {
    let cli = Cli::parse();
    let mut config: Config = load_or_exit("scheduler", cli.config.as_deref(), ENV_PREFIX, &cli.overrides());
    if !cli.seed_peers.is_empty() {
        // A list is not a scalar override: set it here and validate again.
        config.seed_peers = cli.seed_peers.iter().map(|a| SeedPeerConfig { ip: a.ip(), port: a.port() }).collect();
        if let Err(e) = config.validate() {
            eprintln!("scheduler: config: {e}");
            std::process::exit(2);
        }
    }
    if cli.print_config {
        match serde_yaml_ng::to_string(&config) {
            Ok(y) => print!("{y}"),
            Err(e) => eprintln!("scheduler: cannot print config: {e}"),
        }
        return;
    }
    let (log, tracing) = (config.log.clone(), config.tracing.clone());
    let bind_config = config.clone();
    let code = darter_common::service::run(
        "scheduler",
        &log,
        &tracing,
        cli.ready_file.as_deref(),
        || async move { scheduler::Listeners::bind(&bind_config).await },
        |listeners, shutdown| scheduler::run(config, listeners, shutdown),
    );
    std::process::exit(code);
}
