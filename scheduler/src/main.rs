//! scheduler: Darter's scheduler. See `scheduler --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use darter_common::config::{Validate as _, load_or_exit};
use scheduler::config::{Config, ENV_PREFIX, SeedPeerConfig};
use tokio_util::sync::CancellationToken;

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
    darter_common::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = runtime.block_on(async move {
        let _telemetry = match darter_common::telemetry::init("scheduler", &config.log, &config.tracing) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("scheduler: cannot start telemetry: {e}");
                return 1;
            }
        };
        let listeners = match scheduler::Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("scheduler: {e}");
                return 1;
            }
        };
        let shutdown = CancellationToken::new();
        darter_common::shutdown::cancel_on_signal(shutdown.clone());
        match scheduler::run(config, listeners, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("scheduler: {e:#}");
                1
            }
        }
    });
    std::process::exit(code);
}
