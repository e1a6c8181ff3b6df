//! manager: Darter's manager, the control plane (clusters, scopes,
//! membership). See `manager --help`.
//!
//! Loads and validates its config (`MANAGER__*` env overrides, flags), starts
//! telemetry, and serves the gRPC API (default `0.0.0.0:65003`), the REST API
//! and console (default `0.0.0.0:8080`) and `/metrics` + `/healthz` (default
//! `0.0.0.0:8081`) until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use darter_common::config::load_or_exit;
use manager::config::{Config, ENV_PREFIX};

/// Darter's manager: clusters, their schedulers and seed peers.
#[derive(Debug, Parser)]
#[command(name = "manager", version, about)]
struct Cli {
    /// Config file (YAML). Every field has a default; `MANAGER__FIELD` env vars override it.
    #[arg(short, long)]
    config: Option<PathBuf>,
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
    /// Once every listener is bound, write their addresses here as JSON
    /// (`{"pid": N, "addresses": {"grpc": "127.0.0.1:40123", ...}}`): bind port 0
    /// and read what the kernel picked.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Log level or filter (log.level).
    #[arg(long)]
    log_level: Option<String>,
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
        if let Some(a) = self.rest_addr {
            o.push(("rest_addr", a.to_string()));
        }
        if let Some(u) = &self.redis_url {
            o.push(("cache.redis_url", u.clone()));
        }
        if let Some(u) = &self.database_url {
            o.push(("database_url", u.clone()));
        }
        if let Some(l) = &self.log_level {
            o.push(("log.level", l.clone()));
        }
        o
    }
}

/// SQLite creates the database file (`mode=rwc`) but not its directory.
fn ensure_sqlite_dir(url: &str) -> std::io::Result<()> {
    let Some(rest) = url.strip_prefix("sqlite://") else { return Ok(()) };
    let path = rest.split('?').next().unwrap_or_default();
    match Path::new(path).parent() {
        Some(dir) if !path.is_empty() && path != ":memory:" && !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir)
        }
        _ => Ok(()),
    }
}

fn main() {
    let cli = Cli::parse();
    let config: Config = load_or_exit("manager", cli.config.as_deref(), ENV_PREFIX, &cli.overrides());
    if let Err(e) = ensure_sqlite_dir(&config.database_url) {
        eprintln!("manager: database_url: cannot create the database directory: {e}");
        std::process::exit(2);
    }
    let (log, tracing) = (config.log.clone(), config.tracing.clone());
    let bind_config = config.clone();
    let code = darter_common::service::run(
        "manager",
        &log,
        &tracing,
        cli.ready_file.as_deref(),
        || async move { manager::Listeners::bind(&bind_config).await },
        |listeners, shutdown| manager::run(config, listeners, shutdown),
    );
    std::process::exit(code);
}
