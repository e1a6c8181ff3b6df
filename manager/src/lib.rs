//! `manager`: Darter's control plane — clusters and their scopes, scheduler and
//! seed-peer membership, users and tokens, the REST API and the console.
//!
//! Layout:
//! - [`store`]: the persistence layer. It owns every SQL statement in the crate
//!   and runs the same schema on SQLite, PostgreSQL and MySQL/MariaDB, picked
//!   by URL scheme ([`store::Store::open`]). Its domain types ([`store::Cluster`],
//!   [`store::Member`], [`store::User`], [`store::Token`]) are what the rest of
//!   the manager works with; its one error type is [`store::StoreError`].
//! - [`matching`]: which cluster a peer belongs to (ARCHITECTURE.md §5), a pure
//!   function over the stored clusters that says which rule matched;
//!   [`lookup`] runs it over the store with the matched cluster's members.
//! - [`cache`]: `ListSchedulers` answers cached per peer, invalidated by
//!   generation, in process or shared through Redis.
//! - [`clock`]: what time it is; the system clock, or one tests move by hand.
//! - [`auth`]: passwords (argon2), sign-in JWTs, personal access tokens, the
//!   root account on first start; [`password`] runs argon2 on threads of its
//!   own behind a bounded queue, [`sign_in_throttle`] slows down guessing.
//! - [`private_files`]: the SQLite database 0600 in a 0700 directory, secret
//!   files 0600.
//! - [`grpc`]: the `darter.manager.v1.Manager` service (register, keepalive
//!   stream, `ListSchedulers`), with request validation in `grpc::convert`.
//! - [`pki`]: the manager as the cluster's CA: join tokens, enrollment,
//!   renewal, revocation (ARCHITECTURE.md §7).
//! - [`rest`]: the REST API (`/api/v1`), its OpenAPI document, the console,
//!   and the server that serves them within the limits of `rest:`.
//! - [`expiry`]: the loop that marks silent members inactive, deletes old
//!   inactive rows and expired sign-outs, and counts members for the metrics.
//! - [`context`]: what the services and loops share; [`metrics`]; [`config`];
//!   [`error`]: the one error type (a gRPC status or an HTTP answer).
//! - `main.rs`: the binary.
//!
//! [`run`] serves on listeners the caller bound, so tests use ephemeral ports;
//! [`run_with`] also takes the clock, so tests move time instead of waiting.

pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod context;
pub mod error;
pub mod expiry;
pub mod grpc;
pub mod lookup;
pub mod matching;
pub mod metrics;
pub mod password;
pub mod pki;
pub mod private_files;
pub mod rest;
pub mod sign_in_throttle;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use darter_common::service::{Servers, serve_until_shutdown};
use darter_common::telemetry::{Health, MetricsServer, bind};
use darter_proto::manager::v1::manager_server::ManagerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::cache::AnswerCache;
use crate::clock::Clock;
pub use crate::config::Config;
use crate::context::Context;
use crate::grpc::ManagerService;
use crate::store::Store;

/// How long shutdown waits for keepalive streams and the expiry loop to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The sockets the manager serves on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC API.
    pub grpc: TcpListener,
    /// Metrics and health.
    pub metrics: TcpListener,
    /// REST API, OpenAPI document and console.
    pub rest: TcpListener,
}

impl Listeners {
    /// Binds the addresses in `config`.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            grpc: bind(config.grpc_addr).await?,
            metrics: bind(config.metrics_addr).await?,
            rest: bind(config.rest_addr).await?,
        })
    }
}

impl darter_common::service::Bound for Listeners {
    fn addresses(&self) -> Vec<(String, String)> {
        darter_common::service::tcp_addresses([("grpc", &self.grpc), ("metrics", &self.metrics), ("rest", &self.rest)])
    }
}

/// Opens the store, then runs the manager until `shutdown` is cancelled and
/// drains: keepalive streams end with UNAVAILABLE (members stay as they are;
/// the grace period decides, since another replica may take their streams),
/// the gRPC server stops, `/healthz` answers 503 until the end. Fails if the
/// store cannot be opened or the gRPC or REST server stops on its own (the
/// error names which).
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(config, listeners, shutdown, Clock::system()).await
}

/// [`run`], reading the time from `clock` wherever the manager compares
/// against now (token expiry, sign-outs, password changes, keepalives and
/// their grace period, cached answers' TTL).
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    clock: Clock,
) -> anyhow::Result<()> {
    let files = private_files::secure_sqlite(&config.database_url, &[&config.auth.root_password_file])
        .map_err(|e| anyhow::anyhow!("database_url: cannot make the database private: {e}"))?;
    private_files::tighten_secret(&config.auth.root_password_file)
        .map_err(|e| anyhow::anyhow!("auth.root_password_file: {e}"))?;
    let store = Store::open(&config.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database (database_url): {e}"))?;
    let auth = Auth::new(store.clone(), &config.auth, clock.clone(), files.was_exposed).await?;
    if files.was_exposed && config.tls.ca_cert_file.is_none() {
        tracing::warn!(
            "the database was readable by other local users: the cluster's CA key in it may have been read; \
             consider a new CA (tls.ca_cert_file) and enrolling members again"
        );
    }
    let pki = pki::Pki::start(&config.tls, &store, clock.clone()).await?;
    let transport = pki.as_ref().map_or(darter_common::tls::Transport::Plaintext, |p| p.transport());
    let cache = Arc::new(match &config.cache.redis_url {
        Some(url) => AnswerCache::redis(url, &config.cache.namespace, config.cache.ttl).await?,
        None => AnswerCache::local(config.cache.ttl, clock.clone()),
    });
    let metrics = metrics::Metrics::new();
    let registry = metrics.registry.clone();
    let health = Health::default();
    let tracker = TaskTracker::new();
    let ctx = Arc::new(Context::new(store.clone(), cache, metrics, clock, shutdown.clone(), tracker.clone()));
    let addrs = (listeners.grpc.local_addr()?, listeners.metrics.local_addr()?, listeners.rest.local_addr()?);

    let expiry_ctx = ctx.clone();
    let expiry_config = config.clone();
    tracker.spawn(async move { expiry::run(expiry_ctx, &expiry_config).await });
    if let Some(pki) = &pki {
        pki.spawn_upkeep(&tracker, shutdown.clone());
    }
    match (&config.tls.bootstrap_tokens_file, &pki) {
        (Some(path), Some(pki)) => {
            let default = store.default_cluster().await.map_err(|e| anyhow::anyhow!("the default cluster: {e}"))?.id;
            pki.keep_bootstrap_tokens(path.clone(), default, &tracker, shutdown.clone()).await?;
        }
        (Some(_), None) => tracing::warn!("tls.bootstrap_tokens_file is ignored: tls.mode is plaintext"),
        (None, _) => {}
    }
    let service = ManagerServer::new(ManagerService::new(ctx.clone(), pki.clone()))
        .max_decoding_message_size(darter_common::tls::limits::MAX_MESSAGE_SIZE);
    let incoming = darter_common::tls::incoming::incoming(
        listeners.grpc,
        transport.server_config(darter_common::tls::ClientAuth::Optional),
        darter_common::tls::ConnectionLimits::default(),
        "grpc",
    );
    let mut servers = Servers::default();
    let server_stop = shutdown.clone();
    servers.spawn(
        "grpc",
        darter_common::tls::grpc_server()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move { server_stop.cancelled().await }),
    );
    let metrics_server = MetricsServer::spawn(listeners.metrics, registry, health.clone());
    let app = rest::router(rest::AppState { ctx: ctx.clone(), auth, pki });
    let rest_server =
        rest::server::serve(listeners.rest, app, config.rest.clone(), ctx.metrics.clone(), shutdown.clone());
    servers.spawn("rest", rest_server);

    health.set_ready(true);
    tracing::info!(
        grpc = %addrs.0, rest = %addrs.2, metrics = %addrs.1, backend = ?store.backend(),
        shared_cache = ctx.cache.is_shared(), "manager ready"
    );
    let served = serve_until_shutdown("manager", servers, &shutdown, &health, &tracker, DRAIN_TIMEOUT).await;
    metrics_server.stop().await;
    store.close().await;
    tracing::info!("manager stopped");
    Ok(served?)
}
