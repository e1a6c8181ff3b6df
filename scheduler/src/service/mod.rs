//! The `darter.scheduler.v1.Scheduler` gRPC service: host announcements,
//! the per-peer announce stream ([`stream`] drives it, [`announce`] handles
//! each message), and the stat / leave calls. [`replay`] runs calls and
//! messages in process, for the fuzz target.

mod announce;
pub mod replay;
mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use darter_common::sync::MutexExt as _;
use darter_common::task_id::TaskId;
use darter_common::tls::authz;
use darter_common::tls::grant::Issuer;
use darter_common::tls::{Identity, Role, Transport};
use darter_proto::scheduler::v1::{
    self as spb, AnnouncePeerRequest, AnnouncePeerResponse, scheduler_server::Scheduler,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::config::{Config, SchedulingConfig};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::resource::{HostInfo, Resources};
use crate::seed::SeedClient;
use crate::seed_peers::SeedPeers;

/// Responses buffered per announce stream. Pushes to a full buffer are
/// dropped (the peer is not reading), so one slow peer never blocks the scheduler.
pub const RESPONSE_BUFFER: usize = 1024;

/// What every request handler shares.
#[derive(Debug)]
pub struct Context {
    /// The config.
    pub config: Config,
    /// Upload addresses of the trusted seed peers (configured, and listed by the manager).
    pub seed_peers: SeedPeers,
    /// The model.
    pub resources: Resources,
    /// Metrics.
    pub metrics: Metrics,
    /// Seed trigger client.
    pub seeds: SeedClient,
    /// Cancelled when the scheduler stops; announce streams end with UNAVAILABLE.
    pub shutdown: CancellationToken,
    /// Announce stream tasks, drained on shutdown.
    pub tracker: TaskTracker,
    /// Plaintext or mutual TLS; with TLS, callers are authorized by role.
    pub transport: Transport,
    /// This scheduler's cluster (its certificate's; `None` in plaintext
    /// mode): only that cluster's peers and seed peers may call it.
    pub cluster_id: Option<u64>,
    /// Registered announce streams per host (`limits.max_peers_per_host`).
    pub streams: Arc<HostStreams>,
    /// Signs piece grants with this scheduler's certificate key (`None` in
    /// plaintext mode: parents then ask for none).
    pub grants: Option<Issuer>,
    /// The scheduling limits in force: `config.scheduling`, with the
    /// cluster's config from the manager over it once it answers
    /// ([`Context::apply_cluster_config`]).
    scheduling: RwLock<SchedulingConfig>,
}

impl Context {
    /// A context with an empty model, in plaintext mode.
    pub fn new(config: Config, metrics: Metrics, shutdown: CancellationToken, tracker: TaskTracker) -> Self {
        Self::with_transport(config, metrics, shutdown, tracker, Transport::Plaintext)
    }

    /// A context with an empty model, whose control connections use `transport`.
    pub fn with_transport(
        config: Config,
        metrics: Metrics,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        transport: Transport,
    ) -> Self {
        let seed_peers = SeedPeers::new(config.seed_peers.iter().map(|s| s.addr()).collect());
        let cluster_id = transport.identity().map(|id| id.cluster_id);
        let seeds = SeedClient::new(transport.clone(), cluster_id.unwrap_or(0));
        let resources = Resources::with_max_tasks_per_host(config.limits.max_tasks_per_host);
        let grants = transport.credentials().map(|c| Issuer::new(c.clone(), config.scheduling.grant_ttl));
        Self {
            seed_peers,
            resources,
            metrics,
            seeds,
            shutdown,
            tracker,
            transport,
            cluster_id,
            streams: Arc::default(),
            grants,
            scheduling: RwLock::new(config.scheduling.clone()),
            config,
        }
    }

    /// Sets the `scheduler_seed_peers` gauge, the trusted seeds (listed, and
    /// announced with a seed peer's certificate), and
    /// `scheduler_seed_peers_announced`, those of them a task can be sent to
    /// now: a listed seed is triggered only once it announced itself.
    pub fn update_seed_gauge(&self) {
        let listed = self.seed_peers.all();
        let resources = self.resources.lock();
        let hosts = &resources.hosts;
        let seeds = crate::resource::host::trigger_seeds(hosts, &listed);
        // One walk over the hosts, not one per seed (what `seed_at` finds).
        let seed_hosts: std::collections::HashSet<std::net::SocketAddr> =
            hosts.values().filter(|h| h.is_seed()).map(crate::resource::host::Host::upload_addr).collect();
        let announced = seeds.iter().filter(|a| seed_hosts.contains(a)).count();
        self.metrics.set_seed_peers(seeds.len(), announced);
    }

    /// The scheduling limits in force now.
    pub fn scheduling(&self) -> SchedulingConfig {
        self.scheduling.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Puts the cluster's config from the manager in force (its
    /// `candidate_parent_limit`, `back_to_source_limit` and `load_limit`
    /// over the file's); returns what changed, as `field: old -> new`.
    pub fn apply_cluster_config(&self, cluster: &darter_proto::manager::v1::ClusterConfig) -> Vec<String> {
        let mut current = self.scheduling.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed = Vec::new();
        let mut set = |name: &str, field: &mut usize, value: u32, min: u32| {
            if value >= min && *field != value as usize {
                changed.push(format!("{name}: {field} -> {value}"));
                *field = value as usize;
            }
        };
        set("candidate_parent_limit", &mut current.candidate_parent_limit, cluster.candidate_parent_limit, 1);
        set("back_to_source_limit", &mut current.back_to_source_limit, cluster.back_to_source_limit, 0);
        set("load_limit", &mut current.load_limit, cluster.load_limit, 1);
        changed
    }

    /// The caller of `request`, who must be a peer or seed peer of this
    /// scheduler's cluster (anyone in plaintext mode).
    fn daemon<T>(&self, request: &Request<T>) -> Result<Option<Identity>, Status> {
        let caller = authz::require(request, &[Role::Peer, Role::SeedPeer], self.cluster_id).inspect_err(|_| {
            self.metrics.rejected(darter_common::status::Reason::PermissionDenied.as_str());
        })?;
        Ok(caller.identity().cloned())
    }

    fn reject(&self, e: Error) -> Status {
        self.metrics.rejected(e.reason().as_str());
        Status::from(e)
    }
}

/// Registered announce streams per host: how many downloads each host has
/// going at once.
#[derive(Debug, Default)]
pub struct HostStreams(Mutex<HashMap<String, usize>>);

/// One registered stream of a host, counted until dropped.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<HostStreams>,
    host: String,
}

impl HostStreams {
    /// Counts one more stream of `host`, unless it has `max` already.
    pub fn admit(self: &Arc<Self>, host: &str, max: usize) -> Option<StreamSlot> {
        let mut open = self.0.locked();
        let n = open.entry(host.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot { streams: self.clone(), host: host.to_owned() })
    }

    /// Streams `host` has registered.
    pub fn count(&self, host: &str) -> usize {
        self.0.locked().get(host).copied().unwrap_or(0)
    }

    /// Whether no host has a stream registered.
    pub fn is_empty(&self) -> bool {
        self.0.locked().is_empty()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.0.locked();
        if let Some(n) = open.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.host);
            }
        }
    }
}

/// The service.
#[derive(Debug, Clone)]
pub struct SchedulerService {
    ctx: Arc<Context>,
}

impl SchedulerService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

fn parse_task_id(raw: &str) -> Result<TaskId, Error> {
    TaskId::parse(raw).map_err(|e| Error::InvalidArgument(format!("task_id: {e}")))
}

fn task_not_found(id: &TaskId) -> Error {
    Error::NotFound(format!("task {id} not found"))
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn announce_host(&self, request: Request<spb::AnnounceHostRequest>) -> Result<Response<()>, Status> {
        let caller = self.ctx.daemon(&request)?;
        let host = request
            .into_inner()
            .host
            .ok_or_else(|| self.ctx.reject(Error::InvalidArgument("host is required".into())))?;
        let mut info = HostInfo::try_from(host).map_err(|e| self.ctx.reject(e))?;
        if let Some(id) = &caller
            && info.proto.hostname != id.host
        {
            return Err(self.ctx.reject(Error::PermissionDenied(format!(
                "{id} may not announce host name {:?}: a member announces its certificate's host name",
                info.proto.hostname
            ))));
        }
        // Being a seed grants origin access and a scoring bonus: only a seed
        // peer's certificate gets it (in plaintext mode, a trusted seed
        // address), whatever a host claims.
        let trusted_seed = match &caller {
            Some(id) => id.role == Role::SeedPeer,
            None => self.ctx.seed_peers.contains(SocketAddr::new(info.ip, info.port)),
        };
        if info.kind == crate::resource::HostType::Seed && !trusted_seed {
            tracing::warn!(host_id = %info.id, ip = %info.ip, "host claims to be a seed but is not a seed peer; treating it as normal");
            info.kind = crate::resource::HostType::Normal;
        }
        let (id, ip, seed) = (info.id.clone(), info.ip, info.kind == crate::resource::HostType::Seed);
        // New hosts, and hosts whose role changed (a seed announced before the
        // manager listed it is a normal host until then), are worth a line.
        let (news, seeds_changed) = {
            let mut state = self.ctx.resources.lock();
            state.check_owner(&id, caller.as_ref()).map_err(|e| self.ctx.reject(e))?;
            let before = state.hosts.get(&id).map(|h| (h.info.kind == info.kind, h.is_seed()));
            state.announce_host(info, Instant::now());
            state.set_owner(&id, caller.as_ref());
            let is_seed = state.hosts.get(&id).is_some_and(|h| h.is_seed());
            let was_seed = before.is_some_and(|(_, seed)| seed);
            (before.is_none_or(|(same_kind, _)| !same_kind), is_seed || was_seed)
        };
        if news {
            tracing::info!(host_id = %id, %ip, seed, "host announced");
            // A new seed, or a host that stopped or started being one (not
            // every new host: the gauge walks every host).
            if seeds_changed {
                self.ctx.update_seed_gauge();
            }
        } else {
            tracing::debug!(host_id = %id, "host re-announced");
        }
        Ok(Response::new(()))
    }

    async fn leave_host(&self, request: Request<spb::LeaveHostRequest>) -> Result<Response<()>, Status> {
        let caller = self.ctx.daemon(&request)?;
        let id = request.into_inner().host_id;
        if id.is_empty() {
            return Err(self.ctx.reject(Error::InvalidArgument("host_id must not be empty".into())));
        }
        let (left, was_seed) = {
            let mut state = self.ctx.resources.lock();
            state.check_owner(&id, caller.as_ref()).map_err(|e| self.ctx.reject(e))?;
            let was_seed = state.hosts.get(&id).is_some_and(|h| h.is_seed());
            (state.leave_host(&id, Instant::now()), was_seed)
        };
        if left {
            tracing::info!(host_id = %id, "host left");
            if was_seed {
                self.ctx.update_seed_gauge();
            }
        }
        Ok(Response::new(()))
    }

    type AnnouncePeerStream = ReceiverStream<Result<AnnouncePeerResponse, Status>>;

    async fn announce_peer(
        &self,
        request: Request<Streaming<AnnouncePeerRequest>>,
    ) -> Result<Response<Self::AnnouncePeerStream>, Status> {
        let caller = self.ctx.daemon(&request)?;
        if self.ctx.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown.into());
        }
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        self.ctx.tracker.spawn(stream::run(self.ctx.clone(), caller, request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stat_peer(&self, request: Request<spb::StatPeerRequest>) -> Result<Response<spb::PeerInfo>, Status> {
        self.ctx.daemon(&request)?;
        let req = request.into_inner();
        let id = parse_task_id(&req.task_id).map_err(|e| self.ctx.reject(e))?;
        let state = self.ctx.resources.lock();
        let task = state.tasks.get(&id).ok_or_else(|| Status::from(task_not_found(&id)))?;
        let peer = task
            .find_peer(&req.peer_id)
            .ok_or_else(|| Status::from(Error::NotFound(format!("peer {} of task {id} not found", req.peer_id))))?;
        Ok(Response::new(state.peer_info(task, peer)))
    }

    async fn leave_peer(&self, request: Request<spb::LeavePeerRequest>) -> Result<Response<()>, Status> {
        let caller = self.ctx.daemon(&request)?;
        let req = request.into_inner();
        let id = parse_task_id(&req.task_id).map_err(|e| self.ctx.reject(e))?;
        let mut state = self.ctx.resources.lock();
        let found =
            state.tasks.get(&id).and_then(|t| t.find_peer(&req.peer_id)).map(|p| (p.host_id.clone(), p.generation));
        if let Some((host_id, generation)) = found {
            state.check_owner(&host_id, caller.as_ref()).map_err(|e| self.ctx.reject(e))?;
            state.remove_peer(&id, &host_id, generation, Instant::now());
            tracing::info!(task_id = %id, peer_id = %req.peer_id, %host_id, "peer left");
        }
        Ok(Response::new(()))
    }

    async fn stat_task(&self, request: Request<spb::StatTaskRequest>) -> Result<Response<spb::TaskInfo>, Status> {
        self.ctx.daemon(&request)?;
        let id = parse_task_id(&request.into_inner().task_id).map_err(|e| self.ctx.reject(e))?;
        let state = self.ctx.resources.lock();
        let task = state.tasks.get(&id).ok_or_else(|| Status::from(task_not_found(&id)))?;
        Ok(Response::new(task.info()))
    }
}

#[cfg(test)]
mod tests {
    use darter_proto::manager::v1::ClusterConfig;

    use super::*;

    #[test]
    fn the_clusters_config_replaces_the_files_limits_and_says_what_changed() {
        let ctx = Context::new(Config::default(), Metrics::new(), CancellationToken::new(), TaskTracker::new());
        let cluster = ClusterConfig { candidate_parent_limit: 1, back_to_source_limit: 0, load_limit: 8 };
        let changed = ctx.apply_cluster_config(&cluster);
        assert_eq!(changed, ["candidate_parent_limit: 4 -> 1", "back_to_source_limit: 1 -> 0", "load_limit: 32 -> 8"]);
        let now = ctx.scheduling();
        assert_eq!((now.candidate_parent_limit, now.back_to_source_limit, now.load_limit), (1, 0, 8));
        assert!(ctx.apply_cluster_config(&cluster).is_empty(), "the same config changes nothing");
        let unset = ClusterConfig { candidate_parent_limit: 0, back_to_source_limit: 0, load_limit: 0 };
        assert!(ctx.apply_cluster_config(&unset).is_empty(), "zero limits are not applied");
        assert_eq!(ctx.scheduling().candidate_parent_limit, 1);
    }
}
