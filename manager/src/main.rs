//! manager: Darter's manager, the control plane (clusters, scopes,
//! membership). See `manager --help`.
//!
//! Loads and validates its config (`MANAGER__*` env overrides, flags), starts
//! telemetry, and serves the gRPC API (default `0.0.0.0:65003`), the REST API
//! and console (default `0.0.0.0:8080`) and `/metrics` + `/healthz` (default
//! `0.0.0.0:8081`) until SIGINT/SIGTERM.

use std::net::SocketAddr;

use clap::Parser;
use darter_common::cli::{ServiceArgs, value};
use manager::config::{Config, ENV_PREFIX};

/// Darter's manager: clusters, their schedulers and seed peers.
#[derive(Debug, Parser)]
#[command(
    name = "manager",
    version,
    about,
    after_help = "Environment: MANAGER__FIELD, MANAGER__SECTION__FIELD (e.g. MANAGER__AUTH__ROOT_PASSWORD=...) override the config file; flags override both."
)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// gRPC address (grpc_addr; default 0.0.0.0:65003).
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// Metrics and health address (metrics_addr; default 0.0.0.0:8081).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// REST API and console address (rest_addr; default 0.0.0.0:8080).
    #[arg(long)]
    rest_addr: Option<SocketAddr>,
    /// Redis URL shared by replicas for the ListSchedulers cache (cache.redis_url; default none).
    #[arg(long)]
    redis_url: Option<String>,
    /// Database URL (database_url; default sqlite:///var/lib/darter/manager/manager.db?mode=rwc).
    #[arg(long)]
    database_url: Option<String>,
}

impl Cli {
    /// This binary's own flags as `(dotted.path, value)`.
    fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("grpc_addr", value(self.grpc_addr.as_ref())),
            ("metrics_addr", value(self.metrics_addr.as_ref())),
            ("rest_addr", value(self.rest_addr.as_ref())),
            ("cache.redis_url", self.redis_url.clone()),
            ("database_url", self.database_url.clone()),
        ]
    }
}

fn main() {
    let cli = Cli::parse();
    let config: Config = cli.service.load("manager", ENV_PREFIX, cli.flags());
    let (log, tracing) = (config.log.clone(), config.tracing.clone());
    let bind_config = config.clone();
    let code = darter_common::service::run(
        "manager",
        &log,
        &tracing,
        cli.service.ready_file.as_deref(),
        || async move { manager::Listeners::bind(&bind_config).await },
        |listeners, shutdown| manager::run(config, listeners, shutdown),
    );
    std::process::exit(code);
}
