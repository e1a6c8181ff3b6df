//! A fake manager gRPC service in the test's process: it records what its
//! members do (registrations, keepalives, the stream's end, `ListSchedulers`
//! requests) and answers from state the test sets. Served on `127.0.0.1:0`
//! on a runtime of its own, so [`FakeManagerServer::crash`] drops every
//! connection at once, as a crashed manager would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_server::{Manager, ManagerServer};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status, Streaming};

/// What a member did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A scheduler or seed peer registered.
    Registered(pb::MemberKind),
    /// A keepalive for this member ID arrived.
    KeepAlive(u64),
    /// The keepalive stream of this member ID ended (the goodbye).
    Closed(u64),
}

/// The fake's answers and records.
#[derive(Debug)]
pub struct FakeState {
    /// The member ID registrations get.
    pub member_id: u64,
    /// The cluster registrations and answers name.
    pub cluster_id: u64,
    /// Schedulers `ListSchedulers` answers; `None`: NOT_FOUND `no_cluster`.
    pub schedulers: Option<Vec<SocketAddr>>,
    /// Seed peers `ListSchedulers` answers.
    pub seed_peers: Vec<pb::Member>,
    /// Host names answered NOT_FOUND `no_cluster` whatever `schedulers` holds.
    pub no_cluster_for: Vec<String>,
    /// Whether a seed peer may register (a scheduler's fake says no).
    pub accept_seed_peers: bool,
    /// Whether a scheduler may register (a dfdaemon's fake says no).
    pub accept_schedulers: bool,
    /// What members did, in order.
    pub events: Vec<Event>,
    /// Every scheduler registration.
    pub scheduler_registrations: Vec<pb::RegisterSchedulerRequest>,
    /// Every seed peer registration.
    pub seed_peer_registrations: Vec<pb::RegisterSeedPeerRequest>,
    /// Every `ListSchedulers` request.
    pub list_requests: Vec<pb::ListSchedulersRequest>,
}

impl Default for FakeState {
    fn default() -> Self {
        Self {
            member_id: 1,
            cluster_id: 1,
            schedulers: Some(Vec::new()),
            seed_peers: Vec::new(),
            no_cluster_for: Vec::new(),
            accept_seed_peers: true,
            accept_schedulers: true,
            events: Vec::new(),
            scheduler_registrations: Vec::new(),
            seed_peer_registrations: Vec::new(),
            list_requests: Vec::new(),
        }
    }
}

impl FakeState {
    /// How many recorded events match `f`.
    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }

    /// Keepalives received (any member).
    pub fn keepalives(&self) -> usize {
        self.count(|e| matches!(e, Event::KeepAlive(_)))
    }

    /// Whether a keepalive stream has ended.
    pub fn closed(&self) -> bool {
        self.count(|e| matches!(e, Event::Closed(_))) > 0
    }

    /// A member of this fake's cluster.
    pub fn member(&self, kind: pb::MemberKind, hostname: &str, ip: &str, port: u32) -> pb::Member {
        pb::Member {
            id: self.member_id,
            kind: kind as i32,
            hostname: hostname.into(),
            ip: ip.into(),
            port,
            cluster_id: self.cluster_id,
            state: pb::MemberState::Active as i32,
            ..Default::default()
        }
    }
}

/// The fake service; clones share their state.
#[derive(Clone, Debug, Default)]
pub struct FakeManager(Arc<Mutex<FakeState>>);

impl FakeManager {
    /// A fake whose registrations get `member_id` in cluster `cluster_id`.
    pub fn new(member_id: u64, cluster_id: u64) -> Self {
        Self(Arc::new(Mutex::new(FakeState { member_id, cluster_id, ..FakeState::default() })))
    }

    /// Its state, to set answers or read records.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves it on `127.0.0.1:0`.
    pub fn serve(&self) -> FakeManagerServer {
        self.serve_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves it on `addr` (a crashed server's address, to restart it).
    pub fn serve_on(&self, addr: SocketAddr) -> FakeManagerServer {
        let listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("bound");
        let service = ManagerServer::new(self.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let serve = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops the connection tasks with it.
        });
        FakeManagerServer { addr, stop: Some(stop), thread: Some(thread) }
    }
}

/// A served fake; crashes when dropped.
#[derive(Debug)]
pub struct FakeManagerServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeManagerServer {
    /// Stops serving and drops every connection.
    pub fn crash(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeManagerServer {
    fn drop(&mut self) {
        self.crash();
    }
}

#[tonic::async_trait]
impl Manager for FakeManager {
    async fn register_scheduler(
        &self,
        request: Request<pb::RegisterSchedulerRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let r = request.into_inner();
        let mut s = self.state();
        if !s.accept_schedulers {
            return Err(Status::unimplemented("this fake manager takes no schedulers"));
        }
        s.events.push(Event::Registered(pb::MemberKind::Scheduler));
        let member = s.member(pb::MemberKind::Scheduler, &r.hostname, &r.ip, r.port);
        s.scheduler_registrations.push(r);
        Ok(Response::new(member))
    }

    async fn register_seed_peer(
        &self,
        request: Request<pb::RegisterSeedPeerRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let r = request.into_inner();
        let mut s = self.state();
        if !s.accept_seed_peers {
            return Err(Status::unimplemented("this fake manager takes no seed peers"));
        }
        s.events.push(Event::Registered(pb::MemberKind::SeedPeer));
        let host = r.host.clone().unwrap_or_default();
        let member = pb::Member {
            download_port: host.download_port,
            ..s.member(pb::MemberKind::SeedPeer, &host.hostname, &host.ip, host.port)
        };
        s.seed_peer_registrations.push(r);
        Ok(Response::new(member))
    }

    async fn keep_alive(&self, request: Request<Streaming<pb::KeepAliveRequest>>) -> Result<Response<()>, Status> {
        let mut stream = request.into_inner();
        let mut id = 0;
        while let Ok(Some(k)) = stream.message().await {
            id = k.member_id;
            self.state().events.push(Event::KeepAlive(id));
        }
        self.state().events.push(Event::Closed(id));
        Ok(Response::new(()))
    }

    async fn list_schedulers(
        &self,
        request: Request<pb::ListSchedulersRequest>,
    ) -> Result<Response<pb::ListSchedulersResponse>, Status> {
        let r = request.into_inner();
        let mut s = self.state();
        let no_cluster = s.no_cluster_for.contains(&r.hostname);
        s.list_requests.push(r);
        let schedulers = match &s.schedulers {
            Some(list) if !no_cluster => list.clone(),
            _ => {
                return Err(darter_common::status::with_reason(
                    Code::NotFound,
                    "no cluster".into(),
                    darter_common::status::Reason::NoCluster,
                ));
            }
        };
        let schedulers = schedulers
            .into_iter()
            .map(|a| s.member(pb::MemberKind::Scheduler, "", &a.ip().to_string(), u32::from(a.port())))
            .collect();
        Ok(Response::new(pb::ListSchedulersResponse {
            cluster_id: s.cluster_id,
            cluster_name: "default".into(),
            schedulers,
            seed_peers: s.seed_peers.clone(),
            ..Default::default()
        }))
    }

    // The fake speaks plaintext: members that talk to it run in plaintext
    // (development) mode, where nothing is enrolled.
    async fn enroll(&self, _: Request<pb::EnrollRequest>) -> Result<Response<pb::IssuedCertificate>, Status> {
        Err(Status::unimplemented("the fake manager is no CA"))
    }

    async fn renew_certificate(
        &self,
        _: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        Err(Status::unimplemented("the fake manager is no CA"))
    }

    async fn get_trust_bundle(&self, _: Request<()>) -> Result<Response<pb::TrustBundle>, Status> {
        Err(Status::unimplemented("the fake manager is no CA"))
    }
}
