//! The manager's gRPC service (`darter.manager.v1.Manager`): membership
//! (register + keepalive stream) and the cluster lookup (`ListSchedulers`).
//!
//! Requests are validated into domain types in [`convert`]; errors become
//! statuses only through [`crate::error::Error`].

pub mod convert;

use std::sync::Arc;

use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_server::Manager;
use prost::Message as _;
use tonic::{Request, Response, Status, Streaming};

use crate::context::Context;
use crate::error::Error;
use crate::lookup::resolve;
use crate::matching::PeerFacts;
use convert::{KeepAlive, RegisterRequest};

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
        let member = store.register_member(&reg, self.ctx.clock.timestamp()).await.map_err(|e| match e {
            crate::store::StoreError::NotFound => Error::NotFound(format!("cluster {} not found", reg.cluster_id)),
            e => e.into(),
        })?;
        self.ctx.invalidate("member registered").await;
        tracing::info!(
            kind = ?member.kind, id = member.id, hostname = %member.hostname, ip = %member.ip,
            cluster_id = member.cluster_id, "member registered"
        );
        Ok(convert::member(&member))
    }

    /// The answer for `peer`: from the cache when nothing changed since it
    /// was computed, else from the database (and then cached).
    async fn list_schedulers(&self, peer: PeerFacts) -> Result<pb::ListSchedulersResponse, Error> {
        let lookup = self.ctx.cache.lookup(&peer).await;
        if let Some(bytes) = &lookup.hit {
            match pb::ListSchedulersResponse::decode(bytes.as_slice()) {
                Ok(answer) => {
                    self.ctx.metrics.list_schedulers("cache");
                    return Ok(answer);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable cached answer; recomputing"),
            }
        }
        let resolved = resolve(&self.ctx.store, &peer)
            .await
            .inspect_err(|e| self.ctx.metrics.list_schedulers(e.reason().as_str()))?;
        self.ctx.metrics.list_schedulers("database");
        tracing::debug!(
            peer_ip = %peer.ip, hostname = %peer.hostname, cluster_id = resolved.cluster.id,
            rule = %resolved.found.rule, detail = %resolved.found.detail, "peer matched"
        );
        let answer = convert::answer(&resolved);
        if let Some(generation) = lookup.generation {
            self.ctx.cache.store(&peer, generation, answer.encode_to_vec()).await;
        }
        Ok(answer)
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
    match ctx.store.mark_inactive(first.kind, first.member_id, ctx.clock.timestamp()).await {
        Ok(()) => {
            ctx.invalidate("member inactive").await;
            tracing::info!(kind = ?first.kind, id = first.member_id, "keepalive stream closed; member inactive");
        }
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
    touch(ctx, first).await.map_err(not_found)?;
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
        touch(ctx, first).await.map_err(not_found)?;
    }
}

/// Records one keepalive; a member coming back from inactive changes answers.
async fn touch(ctx: &Context, ka: &KeepAlive) -> Result<(), crate::store::StoreError> {
    if ctx.store.keepalive(ka.kind, ka.member_id, ctx.clock.timestamp()).await? {
        ctx.invalidate("member active again").await;
        tracing::info!(kind = ?ka.kind, id = ka.member_id, "member active again");
    }
    Ok(())
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
