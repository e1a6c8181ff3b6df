//! Darter's scheduler: for each task, which peers fetch which pieces from
//! whom, and who goes back to the origin (ARCHITECTURE.md section 4).
//!
//! Layout:
//! - [`config`]: the scheduler's config (YAML, `SCHEDULER__*` env, flags);
//! - [`resource`]: the in-memory model (hosts, tasks, one peer per host per
//!   task, pieces and reference digests) behind one lock;
//! - [`scheduling`]: candidate parents (filter, score), the answer to a
//!   register or reschedule, and introductions of new holders to
//!   downloading peers;
//! - [`service`]: the gRPC service, with one task per announce stream;
//! - [`seed`]: triggering seed peers; [`seed_peers`]: which addresses are
//!   trusted seeds (configured, and listed by the manager); [`gc`]: expiry by TTL;
//! - [`membership`]: registration and keepalive with the manager, and the
//!   cluster's seed peers from it (when `manager.addrs` is set);
//! - [`metrics`], [`error`] (the one place errors become gRPC statuses);
//! - `src/main.rs`: the `scheduler` binary.
//!
//! [`run`] serves on listeners the caller bound, so tests use ephemeral ports.

pub mod config;
pub mod error;
pub mod gc;
pub mod membership;
pub mod metrics;
pub mod resource;
pub mod scheduling;
pub mod seed;
pub mod seed_peers;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use darter_common::service::{Servers, serve_until_shutdown};
use darter_common::telemetry::{Health, MetricsServer, bind};
use darter_common::tls::incoming::incoming;
use darter_common::tls::{ClientAuth, ConnectionLimits, Role, enroll};
use darter_proto::scheduler::v1::scheduler_server::SchedulerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::Config;
use crate::service::{Context, SchedulerService};

/// How long shutdown waits for announce streams and the GC loop to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The sockets the scheduler serves on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC API.
    pub grpc: TcpListener,
    /// Metrics and health.
    pub metrics: TcpListener,
}

impl Listeners {
    /// Binds the addresses in `config`.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self { grpc: bind(config.grpc_addr).await?, metrics: bind(config.metrics_addr).await? })
    }
}

impl darter_common::service::Bound for Listeners {
    fn addresses(&self) -> Vec<(String, String)> {
        darter_common::service::tcp_addresses([("grpc", &self.grpc), ("metrics", &self.metrics)])
    }
}

/// Runs the scheduler until `shutdown` is cancelled, then drains: announce
/// streams end with UNAVAILABLE, the gRPC server stops, `/healthz` answers 503
/// until the end. Fails if the gRPC server stops on its own.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = metrics::Metrics::new();
    let health = Health::default();
    let tracker = TaskTracker::new();
    let addrs = (listeners.grpc.local_addr()?, listeners.metrics.local_addr()?);
    let hostname = config.host.hostname.clone().unwrap_or_else(darter_common::host::os_hostname);
    let member = enroll::Member {
        tls: &config.tls,
        section: "tls",
        role: Role::Scheduler,
        host: &hostname,
        manager_addrs: &config.manager.addrs,
        state_dir: config.tls.state_dir.clone(),
        connect_timeout: darter_common::manager_client::CONNECT_TIMEOUT,
    };
    let established = enroll::establish(&member).await.map_err(anyhow::Error::msg)?;
    if let (Some(id), Some(configured)) = (established.transport.identity(), config.manager.cluster_id)
        && configured != 0
        && configured != id.cluster_id
    {
        anyhow::bail!("manager.cluster_id is {configured} but the certificate names {id}");
    }
    enroll::maintain(
        enroll::Maintenance {
            transport: established.transport.clone(),
            source: established.source.clone(),
            manager_addrs: config.manager.addrs.clone(),
            state_dir: config.tls.state_dir.clone(),
            refresh_interval: config.manager.refresh_interval,
        },
        &tracker,
        shutdown.clone(),
    );
    let server_tls = established.transport.server_config(ClientAuth::Required);
    let ctx = Arc::new(Context::with_transport(
        config,
        metrics.clone(),
        shutdown.clone(),
        tracker.clone(),
        established.transport,
    ));

    ctx.update_seed_gauge();
    tracker.spawn(gc::run(ctx.clone(), shutdown.clone()));
    membership::spawn(ctx.clone(), addrs.0, shutdown.clone(), &tracker);
    let service = SchedulerServer::new(SchedulerService::new(ctx.clone()))
        .max_decoding_message_size(darter_common::tls::limits::MAX_MESSAGE_SIZE);
    let incoming = incoming(listeners.grpc, server_tls, ConnectionLimits::default(), "grpc");
    let server_stop = shutdown.clone();
    let mut servers = Servers::default();
    servers.spawn(
        "grpc",
        darter_common::tls::grpc_server()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move { server_stop.cancelled().await }),
    );
    // Metrics and health outlive the drain, so probes see 503 while it runs.
    let metrics_server = MetricsServer::spawn(listeners.metrics, metrics.registry.clone(), health.clone());

    health.set_ready(true);
    tracing::info!(
        grpc = %addrs.0, metrics = %addrs.1, seed_peers = ctx.seed_peers.all().len(),
        "scheduler ready"
    );
    let served = serve_until_shutdown("scheduler", servers, &shutdown, &health, &tracker, DRAIN_TIMEOUT).await;
    metrics_server.stop().await;
    tracing::info!("scheduler stopped");
    Ok(served?)
}
