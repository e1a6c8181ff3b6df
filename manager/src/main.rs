//! `manager`: Darter's manager, which the control plane: clusters, scopes, membership, REST API.
//!
//! At this stage the binary loads and validates its config (gRPC address
//! default `0.0.0.0:65003`, metrics `0.0.0.0:8081`, `MANAGER__*` env
//! overrides), starts telemetry and serves `/metrics` and `/healthz` until
//! SIGINT/SIGTERM; its gRPC API (see `proto/`) is built in the issues that follow.

use clap::Parser as _;
use darter_common::service::{ServiceCli, ServiceDefaults, run};

/// Darter's manager.
#[derive(Debug, clap::Parser)]
#[command(name = "manager", version, about)]
struct Cli {
    #[command(flatten)]
    service: ServiceCli,
}

const DEFAULTS: ServiceDefaults =
    ServiceDefaults { name: "manager", env_prefix: "MANAGER", grpc_port: 65003, metrics_port: 8081 };

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    std::process::exit(run(DEFAULTS, cli.service).await);
}
