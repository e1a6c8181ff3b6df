//! The manager's gRPC service (`darter.manager.v1.Manager`): membership
//! (register + keepalive stream) and the cluster lookup (`ListSchedulers`).
//!
//! Requests are validated into domain types in [`convert`]; errors become
//! statuses only through [`crate::error::Error`].

pub mod convert;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_server::Manager;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::matching::{ClusterCandidate, PeerFacts, match_cluster};
use crate::store::{MemberKind, Store, Timestamp};
use convert::{KeepAlive, RegisterRequest};

/// What the service shares with the background loops.
#[derive(Debug)]
pub struct Context {
    pub store: Store,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Per member, the generation of its newest keepalive stream in this
    /// process: a stream that closes marks the member inactive only if no
    /// newer stream took over (a restarted member reconnecting before the
    /// old connection's reset arrives).
    streams: Mutex<HashMap<(MemberKind, i64), u64>>,
    next_stream: std::sync::atomic::AtomicU64,
}

impl Context {
    /// A context over `store`.
    pub fn new(store: Store, shutdown: CancellationToken, tracker: TaskTracker) -> Self {
        Self {
            store,
            shutdown,
            tracker,
            streams: Mutex::new(HashMap::new()),
            next_stream: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn claim_stream(&self, key: (MemberKind, i64)) -> u64 {
        let generation = self.next_stream.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(key, generation);
        generation
    }

    /// Whether the stream `generation` was the newest for `key` (and forgets it).
    fn release_stream(&self, key: (MemberKind, i64), generation: u64) -> bool {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.get(&key) == Some(&generation) {
            streams.remove(&key);
            true
        } else {
            false
        }
    }
}

/// The `Manager` gRPC service.
#[derive(Debug, Clone)]
pub struct ManagerService {
    ctx: Arc<Context>,
}

impl ManagerService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    async fn register(&self, req: RegisterRequest) -> Result<pb::Member, Error> {
        let store = &self.ctx.store;
        let mut reg = req.registration;
        reg.cluster_id = match req.cluster_id {
            None => store.default_cluster().await?.id,
            Some(id) => id,
        };
        let member = store.register_member(&reg, Timestamp::now()).await.map_err(|e| match e {
            crate::store::StoreError::NotFound => Error::NotFound(format!("cluster {} not found", reg.cluster_id)),
            e => e.into(),
        })?;
        tracing::info!(
            kind = ?member.kind, id = member.id, hostname = %member.hostname, ip = %member.ip,
            cluster_id = member.cluster_id, "member registered"
        );
        Ok(convert::member(&member))
    }

    async fn list_schedulers(&self, peer: PeerFacts) -> Result<pb::ListSchedulersResponse, Error> {
        let store = &self.ctx.store;
        let clusters = store.list_clusters().await?;
        let mut candidates = Vec::with_capacity(clusters.len());
        for cluster in clusters {
            let has_active_scheduler = !store.list_active_members(MemberKind::Scheduler, cluster.id).await?.is_empty();
            candidates.push(ClusterCandidate { cluster, has_active_scheduler });
        }
        let found = match_cluster(&peer, &candidates).ok_or(Error::NoCluster)?;
        let cluster = candidates
            .into_iter()
            .map(|c| c.cluster)
            .find(|c| c.id == found.cluster_id)
            .ok_or_else(|| Error::Internal(format!("matched cluster {} vanished", found.cluster_id)))?;
        let schedulers = store.list_active_members(MemberKind::Scheduler, cluster.id).await?;
        let seed_peers = store.list_active_members(MemberKind::SeedPeer, cluster.id).await?;
        tracing::debug!(
            peer_ip = %peer.ip, hostname = %peer.hostname, cluster_id = cluster.id, rule = %found.rule,
            detail = %found.detail, "peer matched"
        );
        Ok(pb::ListSchedulersResponse {
            cluster_id: u64::try_from(cluster.id).unwrap_or_default(),
            cluster_name: cluster.name,
            matched_rule: convert::rule(found.rule) as i32,
            schedulers: schedulers.iter().map(convert::member).collect(),
            seed_peers: seed_peers.iter().map(convert::member).collect(),
            config: Some(convert::cluster_config(&cluster.config)),
        })
    }
}

/// Serves one keepalive stream: the first message must name an existing
/// member; later ones the same member. Each touches the member's keepalive.
/// When the stream ends (closed, reset or refused), the member is marked
/// inactive at once, unless the manager is shutting down: then another
/// replica (or this one, restarted) takes the member's next stream, and the
/// grace period decides.
async fn keepalive_stream(ctx: Arc<Context>, mut stream: Streaming<pb::KeepAliveRequest>) -> Result<(), Error> {
    let first = tokio::select! {
        msg = stream.message() => msg,
        () = ctx.shutdown.cancelled() => return Err(Error::ShuttingDown),
    };
    let first = match first {
        Ok(Some(m)) => KeepAlive::try_from(m)?,
        // Closed before saying who it is: nothing to mark.
        Ok(None) | Err(_) => return Ok(()),
    };
    let member = ctx.store.get_member(first.kind, first.member_id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound => Error::NotFound(format!("member {} not found", first.member_id)),
        e => e.into(),
    })?;
    if !first.names(&member) {
        return Err(Error::invalid("hostname", "hostname and ip do not match the registered member"));
    }
    let key = (first.kind, first.member_id);
    let generation = ctx.claim_stream(key);
    let result = serve_keepalives(&ctx, &first, &mut stream).await;
    let newest = ctx.release_stream(key, generation);
    if matches!(result, Err(Error::ShuttingDown)) || !newest {
        return result;
    }
    match ctx.store.mark_inactive(first.kind, first.member_id, Timestamp::now()).await {
        Ok(()) => tracing::info!(kind = ?first.kind, id = first.member_id, "keepalive stream closed; member inactive"),
        Err(e) => tracing::warn!(kind = ?first.kind, id = first.member_id, error = %e, "cannot mark member inactive"),
    }
    result
}

async fn serve_keepalives(
    ctx: &Context,
    first: &KeepAlive,
    stream: &mut Streaming<pb::KeepAliveRequest>,
) -> Result<(), Error> {
    let not_found = |e| match e {
        crate::store::StoreError::NotFound => Error::NotFound(format!("member {} not found", first.member_id)),
        e => Error::from(e),
    };
    ctx.store.keepalive(first.kind, first.member_id, Timestamp::now()).await.map_err(not_found)?;
    loop {
        let msg = tokio::select! {
            msg = stream.message() => msg,
            () = ctx.shutdown.cancelled() => return Err(Error::ShuttingDown),
        };
        let next = match msg {
            Ok(Some(m)) => KeepAlive::try_from(m)?,
            Ok(None) => return Ok(()),
            Err(status) => {
                tracing::debug!(id = first.member_id, error = %status.message(), "keepalive stream broke");
                return Ok(());
            }
        };
        if next != *first {
            return Err(Error::invalid("member_id", "a keepalive stream serves one member"));
        }
        ctx.store.keepalive(first.kind, first.member_id, Timestamp::now()).await.map_err(not_found)?;
    }
}

#[tonic::async_trait]
impl Manager for ManagerService {
    async fn register_scheduler(
        &self,
        request: Request<pb::RegisterSchedulerRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let req = RegisterRequest::try_from(request.into_inner())?;
        Ok(Response::new(self.register(req).await?))
    }

    async fn register_seed_peer(
        &self,
        request: Request<pb::RegisterSeedPeerRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let req = RegisterRequest::try_from(request.into_inner())?;
        Ok(Response::new(self.register(req).await?))
    }

    async fn keep_alive(&self, request: Request<Streaming<pb::KeepAliveRequest>>) -> Result<Response<()>, Status> {
        // The stream is served by its own task: hyper drops this future when
        // the client resets the stream, and the member must still be marked
        // inactive then.
        let ctx = self.ctx.clone();
        let stream = request.into_inner();
        let task = self.ctx.tracker.spawn(keepalive_stream(ctx, stream));
        match task.await {
            Ok(result) => result.map(Response::new).map_err(Status::from),
            Err(e) => Err(Error::Internal(format!("keepalive task failed: {e}")).into()),
        }
    }

    async fn list_schedulers(
        &self,
        request: Request<pb::ListSchedulersRequest>,
    ) -> Result<Response<pb::ListSchedulersResponse>, Status> {
        let peer = PeerFacts::try_from(request.into_inner())?;
        Ok(Response::new(self.list_schedulers(peer).await?))
    }
}
