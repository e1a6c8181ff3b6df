//! The scheduler with a manager (a fake one in this process): it registers
//! and keeps alive, says goodbye on shutdown, and trusts the seed peers the
//! manager lists for its cluster only while they are listed.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use darter_proto::manager::v1 as mpb;
use darter_proto::manager::v1::manager_server::{Manager, ManagerServer};
use scheduler::Config;
use support::*;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// The cluster the fake manager puts every scheduler in.
const CLUSTER: u64 = 5;

#[derive(Clone, Default)]
struct FakeManager {
    registrations: Arc<Mutex<Vec<mpb::RegisterSchedulerRequest>>>,
    lists: Arc<Mutex<Vec<mpb::ListSchedulersRequest>>>,
    keepalives: Arc<Mutex<u32>>,
    closed: Arc<Mutex<bool>>,
    seed_peers: Arc<Mutex<Vec<mpb::Member>>>,
}

impl FakeManager {
    async fn serve(&self, stop: CancellationToken) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = ManagerServer::new(self.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
                .await;
        });
        addr.to_string()
    }

    fn list_seed(&self, addr: std::net::SocketAddr) {
        *self.seed_peers.lock().unwrap() = vec![mpb::Member {
            id: 9,
            kind: mpb::MemberKind::SeedPeer as i32,
            ip: addr.ip().to_string(),
            port: u32::from(addr.port()),
            download_port: 4003,
            cluster_id: CLUSTER,
            state: mpb::MemberState::Active as i32,
            ..Default::default()
        }];
    }
}

#[tonic::async_trait]
impl Manager for FakeManager {
    async fn register_scheduler(
        &self,
        request: Request<mpb::RegisterSchedulerRequest>,
    ) -> Result<Response<mpb::Member>, Status> {
        let r = request.into_inner();
        self.registrations.lock().unwrap().push(r.clone());
        Ok(Response::new(mpb::Member {
            id: 1,
            kind: mpb::MemberKind::Scheduler as i32,
            hostname: r.hostname,
            ip: r.ip,
            port: r.port,
            cluster_id: CLUSTER,
            state: mpb::MemberState::Active as i32,
            ..Default::default()
        }))
    }

    async fn register_seed_peer(
        &self,
        _request: Request<mpb::RegisterSeedPeerRequest>,
    ) -> Result<Response<mpb::Member>, Status> {
        Err(Status::unimplemented("not a scheduler"))
    }

    async fn keep_alive(&self, request: Request<Streaming<mpb::KeepAliveRequest>>) -> Result<Response<()>, Status> {
        let mut stream = request.into_inner();
        while let Ok(Some(k)) = stream.message().await {
            assert_eq!(k.member_id, 1);
            *self.keepalives.lock().unwrap() += 1;
        }
        *self.closed.lock().unwrap() = true;
        Ok(Response::new(()))
    }

    async fn list_schedulers(
        &self,
        request: Request<mpb::ListSchedulersRequest>,
    ) -> Result<Response<mpb::ListSchedulersResponse>, Status> {
        self.lists.lock().unwrap().push(request.into_inner());
        Ok(Response::new(mpb::ListSchedulersResponse {
            cluster_id: CLUSTER,
            seed_peers: self.seed_peers.lock().unwrap().clone(),
            ..Default::default()
        }))
    }
}

async fn seed_peer_gauge(scheduler: &Scheduler, n: u32) {
    eventually(&format!("scheduler_seed_peers {n}"), || async {
        scheduler.metrics().await.contains(&format!("scheduler_seed_peers {n}\n")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn manager_listed_seed_peers_count_while_listed() {
    let stop = CancellationToken::new();
    let manager = FakeManager::default();
    let manager_addr = manager.serve(stop.clone()).await;
    let seed = FakeSeed::default();
    let seed_addr = seed.serve(stop.clone()).await;
    let mut config = Config::default();
    config.manager.addrs = vec![manager_addr];
    config.manager.keepalive_interval = Duration::from_millis(50);
    config.manager.refresh_interval = Duration::from_millis(50);
    config.host.hostname = Some("sched-1".into());
    let scheduler = Scheduler::start(config).await;

    eventually("a few keepalives", || async { (*manager.keepalives.lock().unwrap() >= 3).then_some(()) }).await;
    let registration = manager.registrations.lock().unwrap()[0].clone();
    assert_eq!(registration.hostname, "sched-1");
    assert_eq!((registration.ip.as_str(), registration.port), ("127.0.0.1", u32::from(scheduler.addr.port())));
    eventually("a ListSchedulers for its cluster", || async {
        manager.lists.lock().unwrap().iter().any(|l| l.cluster_id == CLUSTER && l.ip == "127.0.0.1").then_some(())
    })
    .await;

    // A host claiming to be a seed is not one until the manager lists it.
    let mut client = scheduler.client().await;
    announce(&mut client, host("seed-1", "127.0.0.1", seed_addr.port(), true)).await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    let mut a = Peer::open(&mut client, "host-a", &task_id("http://origin/1"), "peer-1").await;
    a.register(download("http://origin/1")).await;
    a.next_back_to_source().await;
    assert!(seed.calls().is_empty());

    manager.list_seed(seed_addr);
    seed_peer_gauge(&scheduler, 1).await;
    let mut b = Peer::open(&mut client, "host-a", &task_id("http://origin/2"), "peer-2").await;
    b.register(download("http://origin/2")).await;
    let parents = b.next_normal().await.candidate_parents;
    assert!(parents.iter().any(|p| p.is_seed && p.host.as_ref().unwrap().id == "seed-1"), "{parents:?}");
    assert_eq!(seed.calls().len(), 1, "the listed seed was triggered");

    // Gone from the manager's list: no longer a seed, no more triggers.
    manager.seed_peers.lock().unwrap().clear();
    seed_peer_gauge(&scheduler, 0).await;
    let mut c = Peer::open(&mut client, "host-a", &task_id("http://origin/3"), "peer-3").await;
    c.register(download("http://origin/3")).await;
    c.next_back_to_source().await;
    assert_eq!(seed.calls().len(), 1);

    drop((a, b, c));
    scheduler.stop().await;
    assert!(*manager.closed.lock().unwrap(), "the keepalive stream was closed on shutdown (the goodbye)");
    stop.cancel();
}
