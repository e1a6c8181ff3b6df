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

use darter_common::tls::Role;
use darter_common::tls::authz::{self, Caller};

use crate::context::Context;
use crate::error::Error;
use crate::lookup::resolve;
use crate::matching::PeerFacts;
use crate::pki::Pki;
use convert::{KeepAlive, RegisterRequest};

/// The `Manager` gRPC service.
#[derive(Debug, Clone)]
pub struct ManagerService {
    ctx: Arc<Context>,
    pki: Option<Arc<Pki>>,
}

/// The roles that may look up clusters and fetch the trust bundle.
const MEMBERS: &[Role] = &[Role::Scheduler, Role::SeedPeer, Role::Peer];

/// What a member's certificate binds in a registration: the host name, the
/// cluster (a request naming another is refused; one naming none gets the
/// certificate's).
fn bind_registration(caller: Caller<'_>, req: &mut RegisterRequest) -> Result<(), Error> {
    let Some(id) = caller.identity() else { return Ok(()) };
    if req.registration.hostname != id.host {
        return Err(Error::PermissionDenied(format!(
            "{id} may not register host {:?}: a member registers under its certificate's host name",
            req.registration.hostname
        )));
    }
    let cert_cluster = id.cluster_id as i64;
    match req.cluster_id {
        Some(c) if c != cert_cluster => Err(Error::PermissionDenied(format!("{id} may not join cluster {c}"))),
        _ => {
            req.cluster_id = Some(cert_cluster);
            Ok(())
        }
    }
}

impl ManagerService {
    /// A service over `ctx`; `pki` is the CA (`None` in plaintext mode).
    pub fn new(ctx: Arc<Context>, pki: Option<Arc<Pki>>) -> Self {
        Self { ctx, pki }
    }

    fn pki(&self) -> Result<&Pki, Error> {
        self.pki.as_deref().ok_or_else(|| {
            Error::PermissionDenied("this manager runs in plaintext mode (tls.mode): enrollment is off".into())
        })
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
async fn keepalive_stream(
    ctx: Arc<Context>,
    caller: Option<darter_common::tls::Identity>,
    mut stream: Streaming<pb::KeepAliveRequest>,
) -> Result<(), Error> {
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
    if let Some(id) = &caller
        && !owns(id, &member)
    {
        return Err(Error::PermissionDenied(format!(
            "{id} may not keep member {} alive: it belongs to {:?} host {:?} of cluster {}",
            member.id, member.kind, member.hostname, member.cluster_id
        )));
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

/// Whether the member row belongs to the certificate's identity: same kind,
/// host name and cluster.
fn owns(id: &darter_common::tls::Identity, member: &crate::store::Member) -> bool {
    let role = match member.kind {
        crate::store::MemberKind::Scheduler => Role::Scheduler,
        crate::store::MemberKind::SeedPeer => Role::SeedPeer,
    };
    id.role == role && id.host == member.hostname && id.cluster_id as i64 == member.cluster_id
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
        let caller = authz::require(&request, &[Role::Scheduler], None)?;
        let caller = caller.identity().cloned();
        let mut req = RegisterRequest::try_from(request.into_inner())?;
        bind_registration(caller.as_ref().map_or(Caller::Unchecked, Caller::Member), &mut req)?;
        Ok(Response::new(self.register(req).await?))
    }

    async fn register_seed_peer(
        &self,
        request: Request<pb::RegisterSeedPeerRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let caller = authz::require(&request, &[Role::SeedPeer], None)?;
        let caller = caller.identity().cloned();
        let mut req = RegisterRequest::try_from(request.into_inner())?;
        bind_registration(caller.as_ref().map_or(Caller::Unchecked, Caller::Member), &mut req)?;
        Ok(Response::new(self.register(req).await?))
    }

    async fn keep_alive(&self, request: Request<Streaming<pb::KeepAliveRequest>>) -> Result<Response<()>, Status> {
        // The stream is served by its own task: hyper drops this future when
        // the client resets the stream, and the member must still be marked
        // inactive then.
        let caller = authz::require(&request, &[Role::Scheduler, Role::SeedPeer], None)?.identity().cloned();
        let ctx = self.ctx.clone();
        let stream = request.into_inner();
        let task = self.ctx.tracker.spawn(keepalive_stream(ctx, caller, stream));
        match task.await {
            Ok(result) => result.map(Response::new).map_err(Status::from),
            Err(e) => Err(Error::Internal(format!("keepalive task failed: {e}")).into()),
        }
    }

    async fn list_schedulers(
        &self,
        request: Request<pb::ListSchedulersRequest>,
    ) -> Result<Response<pb::ListSchedulersResponse>, Status> {
        let caller = authz::require(&request, MEMBERS, None)?.identity().cloned();
        let mut req = request.into_inner();
        // A member's certificate names its cluster: that is the one it gets.
        if let Some(id) = caller {
            req.cluster_id = id.cluster_id;
        }
        let peer = PeerFacts::try_from(req)?;
        Ok(Response::new(self.list_schedulers(peer).await?))
    }

    async fn enroll(&self, request: Request<pb::EnrollRequest>) -> Result<Response<pb::IssuedCertificate>, Status> {
        let pki = self.pki()?;
        let from = authz::peer(&request).map(|p| p.addr);
        let answer = pki.enroll(request.into_inner()).await;
        if let Err(e) = &answer {
            tracing::warn!(peer = ?from, error = %e, "enrollment refused");
        }
        Ok(Response::new(answer?))
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        let pki = self.pki()?;
        authz::require(&request, MEMBERS, None)?;
        let peer = authz::peer(&request).cloned();
        Ok(Response::new(pki.renew(peer.as_ref(), request.into_inner()).await?))
    }

    async fn get_trust_bundle(&self, request: Request<()>) -> Result<Response<pb::TrustBundle>, Status> {
        let pki = self.pki()?;
        authz::require(&request, MEMBERS, None)?;
        Ok(Response::new(pki.trust_bundle().await?))
    }
}
