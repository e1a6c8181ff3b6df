//! The manager client against an in-process fake manager on 127.0.0.1:0:
//! membership (register, keepalives, goodbye, reconnect) and `ListSchedulers`
//! failover between manager addresses.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use darter_common::manager_client::{Managers, Membership, Registration, is_no_cluster};
use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_server::{Manager, ManagerServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Registered,
    KeepAlive(u64),
    Closed(u64),
}

#[derive(Debug, Clone, Default)]
struct Fake {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Fake {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events().iter().filter(|e| f(e)).count()
    }

    fn member(kind: pb::MemberKind, hostname: &str, ip: &str) -> pb::Member {
        pb::Member {
            id: 7,
            kind: kind as i32,
            hostname: hostname.into(),
            ip: ip.into(),
            port: 8002,
            cluster_id: 3,
            state: pb::MemberState::Active as i32,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Manager for Fake {
    async fn register_scheduler(
        &self,
        request: Request<pb::RegisterSchedulerRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let r = request.into_inner();
        self.events.lock().unwrap().push(Event::Registered);
        Ok(Response::new(Self::member(pb::MemberKind::Scheduler, &r.hostname, &r.ip)))
    }

    async fn register_seed_peer(
        &self,
        request: Request<pb::RegisterSeedPeerRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let host = request.into_inner().host.unwrap_or_default();
        self.events.lock().unwrap().push(Event::Registered);
        Ok(Response::new(Self::member(pb::MemberKind::SeedPeer, &host.hostname, &host.ip)))
    }

    async fn keep_alive(&self, request: Request<Streaming<pb::KeepAliveRequest>>) -> Result<Response<()>, Status> {
        let mut stream = request.into_inner();
        let mut id = 0;
        while let Ok(Some(k)) = stream.message().await {
            id = k.member_id;
            self.events.lock().unwrap().push(Event::KeepAlive(id));
        }
        self.events.lock().unwrap().push(Event::Closed(id));
        Ok(Response::new(()))
    }

    async fn list_schedulers(
        &self,
        request: Request<pb::ListSchedulersRequest>,
    ) -> Result<Response<pb::ListSchedulersResponse>, Status> {
        if request.get_ref().hostname == "nowhere" {
            return Err(darter_common::status::with_reason(
                Code::NotFound,
                "no cluster".into(),
                darter_common::status::Reason::NoCluster,
            ));
        }
        Ok(Response::new(pb::ListSchedulersResponse {
            cluster_id: 3,
            schedulers: vec![Self::member(pb::MemberKind::Scheduler, "s", "10.0.0.1")],
            ..Default::default()
        }))
    }
}

/// A fake manager server on its own runtime, so stopping it drops every
/// connection at once (a crash), not only the accept loop.
struct Server {
    addr: SocketAddr,
    fake: Fake,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    async fn start(fake: Fake, addr: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let service = ManagerServer::new(fake.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
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
        Self { addr, fake, stop: Some(stop), thread: Some(thread) }
    }

    fn crash(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn scheduler() -> Registration {
    Registration::Scheduler(pb::RegisterSchedulerRequest {
        hostname: "s1".into(),
        ip: "127.0.0.1".into(),
        port: 8002,
        ..Default::default()
    })
}

/// An address nothing listens on.
async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn a_member_registers_keeps_alive_and_says_goodbye_on_shutdown() {
    let server = Server::start(Fake::default(), "127.0.0.1:0".parse().unwrap()).await;
    let managers = Managers::new(&[server.addr.to_string()]).unwrap();
    let membership = Membership::new(managers, scheduler(), Duration::from_millis(50));
    let mut member = membership.subscribe();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(membership.run(shutdown.clone()));

    member.wait_for(Option::is_some).await.unwrap();
    assert_eq!(member.borrow().as_ref().map(|m| (m.id, m.cluster_id)), Some((7, 3)));
    let fake = &server.fake;
    eventually("three keepalives", || fake.count(|e| matches!(e, Event::KeepAlive(7))) >= 3).await;
    assert_eq!(fake.count(|e| *e == Event::Registered), 1, "one registration while healthy");

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, run).await.expect("stops promptly").unwrap();
    eventually("the stream closed (goodbye)", || fake.events().last() == Some(&Event::Closed(7))).await;
}

#[tokio::test]
async fn a_member_registers_again_after_the_manager_restarts() {
    let fake = Fake::default();
    let mut server = Server::start(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let managers = Managers::new(&[addr.to_string()]).unwrap();
    let membership = Membership::new(managers, scheduler(), Duration::from_millis(50));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(membership.run(shutdown.clone()));
    eventually("a keepalive", || fake.count(|e| matches!(e, Event::KeepAlive(_))) >= 1).await;

    server.crash();
    let _restarted = Server::start(fake.clone(), addr).await;
    eventually("a second registration", || fake.count(|e| *e == Event::Registered) >= 2).await;
    let before = fake.count(|e| matches!(e, Event::KeepAlive(_)));
    eventually("keepalives on the new stream", || fake.count(|e| matches!(e, Event::KeepAlive(_))) > before + 1).await;

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, run).await.expect("stops promptly").unwrap();
}

#[tokio::test]
async fn a_seed_peer_registers_with_the_first_reachable_manager() {
    let server = Server::start(Fake::default(), "127.0.0.1:0".parse().unwrap()).await;
    let managers = Managers::new(&[dead_addr().await, server.addr.to_string()]).unwrap();
    let registration = Registration::SeedPeer(pb::RegisterSeedPeerRequest {
        host: Some(darter_proto::common::v1::Host {
            hostname: "seed".into(),
            ip: "127.0.0.1".into(),
            ..Default::default()
        }),
        cluster_id: 0,
    });
    let membership = Membership::new(managers, registration, Duration::from_millis(50));
    let mut member = membership.subscribe();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(membership.run(shutdown.clone()));
    tokio::time::timeout(DEADLINE, member.wait_for(Option::is_some)).await.expect("registered").unwrap();
    assert_eq!(member.borrow().as_ref().unwrap().kind, pb::MemberKind::SeedPeer as i32);
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, run).await.expect("stops promptly").unwrap();
}

#[tokio::test]
async fn list_schedulers_fails_over_and_tells_no_cluster_apart() {
    let server = Server::start(Fake::default(), "127.0.0.1:0".parse().unwrap()).await;
    let live = server.addr.to_string();
    let managers = Managers::new(&[dead_addr().await, live.clone()]).unwrap();
    let request = pb::ListSchedulersRequest { hostname: "p".into(), ip: "127.0.0.1".into(), ..Default::default() };
    let answer = managers.list_schedulers(request.clone()).await.unwrap();
    assert_eq!((answer.manager.as_str(), answer.response.cluster_id), (live.as_str(), 3));
    // The manager that answered is asked first from now on.
    let answer =
        tokio::time::timeout(Duration::from_secs(1), managers.list_schedulers(request.clone())).await.unwrap().unwrap();
    assert_eq!(answer.manager, live);

    let nowhere = pb::ListSchedulersRequest { hostname: "nowhere".into(), ..request };
    let status = managers.list_schedulers(nowhere).await.unwrap_err();
    assert!(is_no_cluster(&status), "{status:?}");

    let unreachable = Managers::new(&[dead_addr().await]).unwrap();
    let status = unreachable.list_schedulers(pb::ListSchedulersRequest::default()).await.unwrap_err();
    assert!(!is_no_cluster(&status));
    assert!(status.message().starts_with("manager 127.0.0.1:"), "{status:?}");
}
