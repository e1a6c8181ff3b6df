//! scheduler: Darter's scheduler. See `scheduler --help`.

use std::net::SocketAddr;

use clap::Parser;
use darter_common::cli::{ServiceArgs, list, value};
use scheduler::config::{Config, ENV_PREFIX};

/// Darter's scheduler: plans which peers fetch which pieces from whom.
#[derive(Debug, Parser)]
#[command(
    name = "scheduler",
    version,
    about,
    after_help = "Environment: SCHEDULER__FIELD, SCHEDULER__SECTION__FIELD (e.g. SCHEDULER__GC__INTERVAL=1m) override the config file; flags override both."
)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// gRPC address (grpc_addr).
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// Metrics and health address (metrics_addr).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// A seed peer's upload API, `IP:PORT`; repeat for several. Replaces `seed_peers` of the config file.
    #[arg(long = "seed-peer", value_name = "IP:PORT")]
    seed_peers: Vec<SocketAddr>,
    /// The manager's gRPC address, `HOST:PORT` (manager.addrs); repeat for
    /// replicas. Replaces `manager.addrs` of the config file: register with it
    /// and learn the cluster's seed peers from it.
    #[arg(long = "manager", value_name = "HOST:PORT")]
    managers: Vec<String>,
}

impl Cli {
    /// This binary's own flags as `(dotted.path, value)`.
    fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        // Flow mappings; IPs quoted so `::1` stays a string.
        let seed_peers: Vec<String> =
            self.seed_peers.iter().map(|a| format!("{{ip: \"{}\", port: {}}}", a.ip(), a.port())).collect();
        vec![
            ("grpc_addr", value(self.grpc_addr.as_ref())),
            ("metrics_addr", value(self.metrics_addr.as_ref())),
            ("seed_peers", (!seed_peers.is_empty()).then(|| format!("[{}]", seed_peers.join(", ")))),
            ("manager.addrs", list(&self.managers)),
        ]
    }
}

fn main() {
    let cli = Cli::parse();
    let config: Config = cli.service.load("scheduler", ENV_PREFIX, cli.flags());
    let (log, tracing) = (config.log.clone(), config.tracing.clone());
    let bind_config = config.clone();
    let code = darter_common::service::run(
        "scheduler",
        &log,
        &tracing,
        cli.service.ready_file.as_deref(),
        || async move { scheduler::Listeners::bind(&bind_config).await },
        |listeners, shutdown| scheduler::run(config, listeners, shutdown),
    );
    std::process::exit(code);
}
