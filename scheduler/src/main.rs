//! `scheduler`: Darter's scheduler, which plans piece-level downloads for the swarm.
//!
//! At this stage the binary loads and validates its config, starts telemetry
//! and serves `/metrics` and `/healthz`; its gRPC API (see `proto/`) is
//! built in the issues that follow. It shuts down cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use darter_common::config::{FieldError, Validate, load_or_exit};
use darter_common::telemetry::{Health, LogConfig, TracingConfig, bind, metrics_router, serve_http};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Config of the scheduler (`scheduler.yaml`, `SCHEDULER__*` env overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// gRPC listen address (default `0.0.0.0:8002`).
    grpc_addr: SocketAddr,
    /// `/metrics` and `/healthz` (default `0.0.0.0:8000`).
    metrics_addr: SocketAddr,
    /// Logs.
    log: LogConfig,
    /// OpenTelemetry export.
    tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 8002).into(),
            metrics_addr: ([0, 0, 0, 0], 8000).into(),
            log: LogConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), FieldError> {
        self.log.validate("log")?;
        self.tracing.validate("tracing")
    }
}

/// Darter's scheduler.
#[derive(Debug, Parser)]
#[command(name = "scheduler", version, about)]
struct Cli {
    /// Config file (YAML).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Metrics and health address (metrics_addr).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let overrides: Vec<(&str, String)> =
        cli.metrics_addr.map(|a| ("metrics_addr", a.to_string())).into_iter().collect();
    let config: Config = load_or_exit("scheduler", cli.config.as_deref(), "SCHEDULER", &overrides);
    let _telemetry = match darter_common::telemetry::init("scheduler", &config.log, &config.tracing) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("scheduler: cannot start telemetry: {e}");
            std::process::exit(1);
        }
    };
    let listener = match bind(config.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("scheduler: {e}");
            std::process::exit(1);
        }
    };
    let shutdown = CancellationToken::new();
    darter_common::shutdown::cancel_on_signal(shutdown.clone());
    let health = Health::default();
    health.set_ready(true);
    tracing::info!(metrics = %config.metrics_addr, "scheduler ready (gRPC API not built yet)");
    if let Err(e) = serve_http(listener, metrics_router(prometheus::Registry::new(), health), shutdown).await {
        eprintln!("scheduler: {e}");
        std::process::exit(1);
    }
}
