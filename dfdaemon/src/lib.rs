//! Darter's per-node peer, `dfdaemon`, and its CLI, `dfget`.
//!
//! Layout:
//! - [`config`]: the daemon's config (YAML, `DFDAEMON__*` env, flags) and [`paths`] (default locations);
//! - [`storage`]: tasks on disk, verified pieces, restart recovery, GC;
//! - [`backend`]: origin access by URL scheme (HTTP(S) today);
//! - [`download`]: downloads ([`download::Downloads`] runs them, one job per task
//!   shared by its requests), with back-to-source, the scheduled session
//!   ([`download::Scheduled`]) and output placement; "task" is the content by ID
//!   (ARCHITECTURE.md section 3) and its record on disk ([`storage`]);
//! - [`grpc`]: the download API (unix socket, dfget) and the upload API (TCP);
//! - [`scheduler_client`]: the schedulers (host announcements, the scheduler of a task);
//! - [`discovery`]: the schedulers from the manager (with its last answer on disk),
//!   and a seed peer's registration;
//! - [`piece_server`]: piece bytes to other peers over HTTP (`sendfile` from the page cache);
//!   [`piece_client`]: fetching them (kept-alive connections, one wake-up per 256 KiB
//!   received, into reused buffers from [`buffer_pool`]); [`piece_wire`]: a piece
//!   connection, plain or TLS 1.3 (`upload.encrypt`: rustls's handshake, then
//!   dfdaemon's own record layer, sealing and opening where the bytes lie); piece requests carry the
//!   scheduler's grants (`darter_common::tls::grant`);
//! - [`proxy`]: the registry mirror and HTTP proxy (P2P for blobs, relay otherwise);
//!   [`containerd`]: the `hosts.toml` files that point containerd at it; [`crio`]: the
//!   `registries.conf` drop-in that points CRI-O (containers/image) at it;
//! - [`metrics`], [`error`]; private helpers: `disk` (filesystem size), `host` (this host as announced),
//!   `memory` (heap trimming once idle), `private_fs` (0700 directories, 0600 files);
//! - `src/bin/`: `dfdaemon` (the daemon) and `dfget` (the CLI, `dfget` module).
//!
//! [`run`] starts everything on listeners the caller bound, so tests can use
//! ephemeral ports: [`Daemon::build`] opens the storage and constructs the
//! services (its errors are start-up errors), [`Daemon::serve`] serves them
//! through `darter_common::service::serve_until_shutdown` like the manager
//! and the scheduler (a server that dies stops the daemon, `/healthz` turns
//! 503, everything drains within [`DRAIN_TIMEOUT`]).

pub mod backend;
pub mod buffer_pool;
pub mod config;
pub mod containerd;
pub mod crio;
pub mod dfget;
pub mod discovery;
pub mod download;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod paths;
pub mod piece_client;
pub mod piece_server;
pub mod piece_wire;
pub mod proxy;
pub mod rate_limit;
pub mod scheduler_client;
pub mod socket_access;
pub mod storage;

mod disk;
mod host;
mod memory;
mod private_fs;

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::sync::Arc;

use darter_common::manager_client::Membership;
use darter_common::service::{Servers, serve_until_shutdown};
use darter_common::telemetry::{Health, MetricsServer, bind};
use darter_common::tls::grant::Checker;
use darter_common::tls::incoming::incoming;
use darter_common::tls::{ClientAuth, ConnectionLimits, Role, enroll};
use darter_proto::dfdaemon::v1::dfdaemon_download_server::DfdaemonDownloadServer;
use darter_proto::dfdaemon::v1::dfdaemon_upload_server::DfdaemonUploadServer;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::download::{Downloads, Scheduled};
use crate::scheduler_client::SchedulerClient;
use crate::storage::{GcPolicy, Storage};

/// The sockets the daemon serves on.
#[derive(Debug)]
pub struct Listeners {
    /// Download API (dfget).
    pub download: UnixListener,
    /// Path of the download socket (removed on shutdown).
    pub download_path: PathBuf,
    /// Upload gRPC API.
    pub upload: TcpListener,
    /// Piece data server.
    pub piece: TcpListener,
    /// Metrics and health.
    pub metrics: TcpListener,
    /// Registry mirror and HTTP proxy (`None` when `proxy.enabled` is false).
    pub proxy: Option<TcpListener>,
    /// One mirror-only listener per `proxy.registry_mirrors` entry, with
    /// its registry (none when `proxy.enabled` is false).
    pub registry_mirrors: Vec<(String, TcpListener)>,
}

impl Listeners {
    /// Binds every address in `config`; a live daemon already on the socket is an error,
    /// a stale socket file is replaced. A missing socket directory is
    /// created 0750: the daemon's user and group reach the socket (itself
    /// 0660), nobody else (an existing directory, maybe shared, is left as it is).
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let path = config.download.socket.clone();
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(SOCKET_DIR_MODE)
                .create(dir)
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket; refusing to replace it", path.display()),
                ));
            }
            if tokio::net::UnixStream::connect(&path).await.is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("another dfdaemon is already listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        let download = UnixListener::bind(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", path.display())))?;
        // Owner and group only: the daemon writes outputs with its own rights.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        if let Some(group) = &config.download.socket_group {
            let gid = socket_access::resolve_group(group).map_err(std::io::Error::other)?;
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot give {} to group {group}: {e}", path.display()))
            })?;
        }
        let mut registry_mirrors = Vec::new();
        for m in config.proxy.registry_mirrors.iter().filter(|_| config.proxy.enabled) {
            registry_mirrors.push((m.registry.clone(), bind(m.addr).await?));
        }
        Ok(Self {
            download,
            download_path: path,
            upload: bind(config.upload.grpc_addr).await?,
            piece: bind(config.upload.piece_addr).await?,
            metrics: bind(config.metrics_addr).await?,
            proxy: if config.proxy.enabled { Some(bind(config.proxy.addr).await?) } else { None },
            registry_mirrors,
        })
    }
}

impl darter_common::service::Bound for Listeners {
    fn addresses(&self) -> Vec<(String, String)> {
        let mut tcp = vec![("upload", &self.upload), ("piece", &self.piece), ("metrics", &self.metrics)];
        tcp.extend(self.proxy.as_ref().map(|p| ("proxy", p)));
        let mut all = darter_common::service::tcp_addresses(tcp);
        for (registry, listener) in &self.registry_mirrors {
            let (_, addr) = darter_common::service::tcp_addresses([("", listener)]).remove(0);
            all.push((format!("{REGISTRY_MIRROR_PREFIX}{registry}"), addr));
        }
        all.push(("download_socket".into(), self.download_path.display().to_string()));
        all
    }
}

/// Name of a `proxy.registry_mirrors` listener in the ready file, before
/// its registry (`registry_mirror:ghcr.io`).
pub const REGISTRY_MIRROR_PREFIX: &str = "registry_mirror:";

/// Mode of a download socket directory the daemon creates: owner and group,
/// like the socket (0660) in it.
pub const SOCKET_DIR_MODE: u32 = 0o750;

/// Time the background tasks and the servers get to stop once the daemon is
/// told to; whatever still runs after it is aborted.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the daemon until `shutdown` is cancelled, then drains: [`Daemon::build`]
/// then [`Daemon::serve`]. Fails when it cannot start (storage, a bad
/// setting only found at start) or when one of its servers stops on its own
/// (the error names it).
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    Daemon::build(config, listeners).await?.serve(shutdown).await
}

/// A daemon built but not yet serving: storage open, every service
/// constructed, nothing spawned. Errors up to here are start-up errors.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    listeners: Listeners,
    /// The daemon's own stop: cancelled by the caller's shutdown, or when a
    /// server stops on its own. Downloads hang off it.
    stop: CancellationToken,
    storage: Arc<Storage>,
    metrics: Arc<metrics::Metrics>,
    tasks: Arc<Downloads>,
    schedulers: Option<Arc<SchedulerClient>>,
    discovery: Option<discovery::Discovery>,
    membership: Option<Membership>,
    gc: GcPolicy,
    proxy: Option<Arc<proxy::Proxy>>,
    /// Plaintext or mutual TLS, and where the certificate comes from.
    trust: enroll::Established,
    /// This host's ID, which piece grants name.
    host_id: String,
}

impl Daemon {
    /// Opens the storage and constructs the services on `listeners`.
    pub async fn build(config: Config, listeners: Listeners) -> anyhow::Result<Self> {
        let data_dir = config.storage.data_dir.clone();
        let storage = Arc::new(tokio::task::spawn_blocking(move || Storage::open(&data_dir)).await??);
        let metrics = Arc::new(metrics::Metrics::new());
        let host = host::facts(&config, listeners.upload.local_addr()?, listeners.piece.local_addr()?);
        let stop = CancellationToken::new();
        let member = enroll::Member {
            tls: &config.tls,
            section: "tls",
            role: if config.host.seed { Role::SeedPeer } else { Role::Peer },
            host: &host.hostname,
            manager_addrs: &config.manager.addrs,
            state_dir: Some(config.tls_state_dir()),
            connect_timeout: darter_common::manager_client::CONNECT_TIMEOUT,
        };
        let trust = enroll::establish(&member).await.map_err(anyhow::Error::msg)?;
        if let (Some(id), Some(configured)) = (trust.transport.identity(), config.manager.cluster_id)
            && configured != 0
            && configured != id.cluster_id
        {
            anyhow::bail!("manager.cluster_id is {configured} but the certificate names {id}");
        }
        let transport = trust.transport.clone();
        let mut tasks =
            Downloads::new(storage.clone(), config.back_to_source.clone(), metrics.clone(), stop.child_token())?
                .with_limits(config.download.limits());
        let (mut schedulers, mut discovery, mut membership) = (None, None, None);
        // In a swarm with static schedulers, or with a manager naming them.
        if !config.scheduler.addrs.is_empty() || !config.manager.addrs.is_empty() {
            let scheduler = SchedulerClient::new(&config.scheduler, host.clone(), transport.clone());
            if !config.manager.addrs.is_empty() {
                discovery = Some(
                    discovery::Discovery::new(&config, &host, scheduler.clone(), &transport)
                        .map_err(anyhow::Error::msg)?,
                );
            }
            membership = discovery::seed_membership(&config, &host, &transport).map_err(anyhow::Error::msg)?;
            let piece_tls = transport.identity().and_then(|id| piece_wire::client_config(&transport, id.cluster_id));
            tasks = tasks.with_scheduler(Scheduled::new(
                scheduler.clone(),
                config.p2p.clone(),
                config.host.seed,
                piece_tls,
            )?);
            schedulers = Some(scheduler);
        }
        let tasks = Arc::new(tasks);
        let gc_config = &config.storage.gc;
        let capacity = match gc_config.capacity {
            Some(c) => c.as_u64(),
            None => disk::filesystem_size(storage.root()).unwrap_or(u64::MAX),
        };
        let gc = GcPolicy {
            interval: gc_config.interval,
            task_ttl: gc_config.task_ttl,
            capacity,
            high_watermark: gc_config.high_watermark,
            low_watermark: gc_config.low_watermark,
        };
        let proxy = if listeners.proxy.is_some() {
            Some(
                proxy::Proxy::new(tasks.clone(), config.proxy.clone(), &config.back_to_source, metrics.clone())
                    .map_err(anyhow::Error::msg)?,
            )
        } else {
            None
        };
        Ok(Self {
            config,
            listeners,
            stop,
            storage,
            metrics,
            tasks,
            schedulers,
            discovery,
            membership,
            gc,
            proxy,
            trust,
            host_id: host.id.clone(),
        })
    }

    /// Serves until `shutdown` is cancelled or a server stops on its own,
    /// then drains (`/healthz` answers 503 meanwhile) within [`DRAIN_TIMEOUT`]
    /// and removes the download socket.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            config,
            listeners,
            stop,
            storage,
            metrics,
            tasks,
            schedulers,
            discovery,
            membership,
            gc,
            proxy,
            trust,
            host_id,
        } = self;
        // The caller's shutdown stops the daemon; this task ends with either.
        tokio::spawn({
            let stop = stop.clone();
            async move {
                tokio::select! {
                    _ = shutdown.cancelled() => stop.cancel(),
                    _ = stop.cancelled() => {}
                }
            }
        });
        let tracker = TaskTracker::new();
        enroll::maintain(
            enroll::Maintenance {
                transport: trust.transport.clone(),
                source: trust.source.clone(),
                manager_addrs: config.manager.addrs.clone(),
                state_dir: Some(config.tls_state_dir()),
                refresh_interval: config.manager.refresh_interval,
            },
            &tracker,
            stop.clone(),
        );
        if let Some(discovery) = discovery {
            let answered = discovery.start().await;
            tracker.spawn(discovery.run(answered, stop.clone()));
        }
        if let Some(membership) = membership {
            tracker.spawn(membership.run(stop.clone()));
        }
        if let Some(schedulers) = schedulers {
            tracker.spawn(schedulers.announce_loop(stop.clone()));
        }
        tracker.spawn(storage::run_gc_loop(storage.clone(), gc, stop.clone()));
        {
            let (storage, metrics, stop) = (storage.clone(), metrics.clone(), stop.clone());
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
                    metrics.storage_bytes.set(storage.used_bytes() as i64);
                }
            });
        }

        let addrs = (listeners.upload.local_addr()?, listeners.piece.local_addr()?, listeners.metrics.local_addr()?);
        let proxy_addr = listeners.proxy.as_ref().map(TcpListener::local_addr).transpose()?;
        let mut servers = Servers::default();
        let socket_group = config.download.socket_group.as_deref().and_then(|g| socket_access::resolve_group(g).ok());
        let download_svc = DfdaemonDownloadServer::new(grpc::download::DownloadService::new(
            tasks.clone(),
            config.download.default_timeout,
            socket_access::SocketAccess::new(socket_group),
        ));
        servers.spawn(
            "download",
            tonic::transport::Server::builder().add_service(download_svc).serve_with_incoming_shutdown(
                UnixListenerStream::new(listeners.download),
                stop.clone().cancelled_owned(),
            ),
        );
        let upload_svc = DfdaemonUploadServer::new(grpc::upload::UploadService::new(
            tasks.clone(),
            config.host.seed,
            trust.transport.identity().map(|id| id.cluster_id),
        ))
        .max_decoding_message_size(darter_common::tls::limits::MAX_MESSAGE_SIZE);
        let upload_tls = trust.transport.server_config(ClientAuth::Required);
        servers.spawn(
            "upload",
            darter_common::tls::grpc_server().add_service(upload_svc).serve_with_incoming_shutdown(
                incoming(listeners.upload, upload_tls, ConnectionLimits::default(), "upload"),
                stop.clone().cancelled_owned(),
            ),
        );
        let grants = trust.transport.credentials().map(|c| Checker::new(c.clone(), host_id.clone()));
        let encryption = match (config.upload.encrypt, trust.transport.identity()) {
            (true, Some(id)) => piece_server::Encryption::new(&trust.transport, id.cluster_id),
            _ => None,
        };
        let pieces = piece_server::PieceServer::with_security(
            storage.clone(),
            piece_server::Limits::from_config(&config.upload),
            metrics.clone(),
            grants,
            encryption,
        );
        servers.spawn("piece", pieces.serve(listeners.piece, stop.clone()));
        if let (Some(proxy), Some(listener)) = (proxy, listeners.proxy) {
            for (registry, listener) in listeners.registry_mirrors {
                servers.spawn(
                    "registry mirror",
                    until_stopped(proxy.clone().serve_registry(listener, registry, stop.clone())),
                );
            }
            servers.spawn("proxy", until_stopped(proxy.serve(listener, stop.clone())));
        }
        // Metrics and health outlive the drain, so probes see 503 while it runs.
        let health = Health::default();
        let metrics_server = MetricsServer::spawn(listeners.metrics, metrics.registry.clone(), health.clone());

        health.set_ready(true);
        tracing::info!(
            socket = %listeners.download_path.display(),
            upload = %addrs.0, pieces = %addrs.1, metrics = %addrs.2, proxy = ?proxy_addr,
            data_dir = %config.storage.data_dir.display(),
            "dfdaemon ready"
        );
        let served = serve_until_shutdown("dfdaemon", servers, &stop, &health, &tracker, DRAIN_TIMEOUT).await;
        let _ = std::fs::remove_file(&listeners.download_path);
        metrics_server.stop().await;
        tracing::info!("dfdaemon stopped");
        Ok(served?)
    }
}

/// A server loop without a result (it logs its own errors), as a [`Servers`]
/// entry: returning before the daemon is told to stop is what fails it.
async fn until_stopped(server: impl std::future::Future<Output = ()>) -> Result<(), std::convert::Infallible> {
    server.await;
    Ok(())
}
