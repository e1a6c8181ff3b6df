//! `manager`: Darter's manager, which the control plane: clusters, scopes, membership, REST API.
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

/// Config of the manager (`manager.yaml`, `MANAGER__*` env overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// gRPC listen address (default `0.0.0.0:65003`).
    grpc_addr: SocketAddr,
    /// `/metrics` and `/healthz` (default `0.0.0.0:8081`).
    metrics_addr: SocketAddr,
    /// Logs.
    log: LogConfig,
    /// OpenTelemetry export.
    tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 65003).into(),
            metrics_addr: ([0, 0, 0, 0], 8081).into(),
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

/// Darter's manager.
#[derive(Debug, Parser)]
#[command(name = "manager", version, about)]
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
    let config: Config = load_or_exit("manager", cli.config.as_deref(), "MANAGER", &overrides);
    let _telemetry = match darter_common::telemetry::init("manager", &config.log, &config.tracing) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("manager: cannot start telemetry: {e}");
            std::process::exit(1);
        }
    };
    let listener = match bind(config.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("manager: {e}");
            std::process::exit(1);
        }
    };
    let shutdown = CancellationToken::new();
    darter_common::shutdown::cancel_on_signal(shutdown.clone());
    let health = Health::default();
    health.set_ready(true);
    tracing::info!(metrics = %config.metrics_addr, "manager ready (gRPC API not built yet)");
    if let Err(e) = serve_http(listener, metrics_router(prometheus::Registry::new(), health), shutdown).await {
        eprintln!("manager: {e}");
        std::process::exit(1);
    }
}
