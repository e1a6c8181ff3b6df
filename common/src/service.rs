//! The skeleton of a service binary that has no API of its own yet: config
//! (listen addresses, logs, traces), telemetry, `/metrics` and `/healthz`,
//! shutdown on SIGINT/SIGTERM. The scheduler and manager start from it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{FieldError, Validate, load_or_exit};
use crate::telemetry::{Health, LogConfig, TracingConfig, bind, metrics_router, serve_http};

/// Config of a service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// gRPC listen address (default: `0.0.0.0:` the service's port).
    pub grpc_addr: Option<SocketAddr>,
    /// `/metrics` and `/healthz` (default: `0.0.0.0:` the service's metrics port).
    pub metrics_addr: Option<SocketAddr>,
    /// Logs.
    pub log: LogConfig,
    /// OpenTelemetry export.
    pub tracing: TracingConfig,
}

impl Validate for ServiceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.log.validate("log")?;
        self.tracing.validate("tracing")
    }
}

/// A service's name and default ports.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    /// Binary name (messages, telemetry).
    pub name: &'static str,
    /// Prefix of env overrides.
    pub env_prefix: &'static str,
    /// Default gRPC port.
    pub grpc_port: u16,
    /// Default metrics port.
    pub metrics_port: u16,
}

/// Command line of such a service.
#[derive(Debug, clap::Parser)]
pub struct ServiceCli {
    /// Config file (YAML); `<NAME>__FIELD` env vars override it.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Metrics and health address (metrics_addr).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
}

/// Loads the config (exit 2 when bad), starts telemetry and serves
/// `/metrics` + `/healthz` until SIGINT/SIGTERM; returns the exit code.
pub async fn run(defaults: ServiceDefaults, cli: ServiceCli) -> i32 {
    let name = defaults.name;
    let overrides: Vec<(&str, String)> =
        cli.metrics_addr.map(|a| ("metrics_addr", a.to_string())).into_iter().collect();
    let config: ServiceConfig = load_or_exit(name, cli.config.as_deref(), defaults.env_prefix, &overrides);
    let metrics_addr = config.metrics_addr.unwrap_or_else(|| ([0, 0, 0, 0], defaults.metrics_port).into());
    let _telemetry = match crate::telemetry::init(name, &config.log, &config.tracing) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{name}: cannot start telemetry: {e}");
            return 1;
        }
    };
    let listener = match bind(metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: {e}");
            return 1;
        }
    };
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signal(shutdown.clone());
    let health = Health::default();
    health.set_ready(true);
    tracing::info!(metrics = %metrics_addr, "{name} ready (gRPC API not built yet)");
    match serve_http(listener, metrics_router(prometheus::Registry::new(), health), shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: {e}");
            1
        }
    }
}
