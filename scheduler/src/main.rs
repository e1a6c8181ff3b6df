//! `scheduler`: Darter's scheduler, which plans piece-level downloads for the swarm.
//!
//! At this stage the binary loads and validates its config (gRPC address
//! default `0.0.0.0:8002`, metrics `0.0.0.0:8000`, `SCHEDULER__*` env
//! overrides), starts telemetry and serves `/metrics` and `/healthz` until
//! SIGINT/SIGTERM; its gRPC API (see `proto/`) is built in the issues that follow.

use clap::Parser as _;
use darter_common::service::{ServiceCli, ServiceDefaults, run};

/// Darter's scheduler.
#[derive(Debug, clap::Parser)]
#[command(name = "scheduler", version, about)]
struct Cli {
    #[command(flatten)]
    service: ServiceCli,
}

const DEFAULTS: ServiceDefaults =
    ServiceDefaults { name: "scheduler", env_prefix: "SCHEDULER", grpc_port: 8002, metrics_port: 8000 };

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    std::process::exit(run(DEFAULTS, cli.service).await);
}
