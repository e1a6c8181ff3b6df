//! A dfdaemon process with a manager (a fake one in this process): it takes
//! its schedulers from `ListSchedulers`, keeps the last good answer on disk
//! and uses it when the manager is down, never lets an empty answer wipe a
//! good list, and a seed peer registers and keeps alive.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use darter_proto::manager::v1 as mpb;
use darter_proto::manager::v1::manager_server::{Manager, ManagerServer};
use darter_proto::scheduler::v1 as spb;
use darter_proto::scheduler::v1::scheduler_server::{Scheduler, SchedulerServer};
use support::Daemon;
use testkit::eventually::wait_until;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

const DEADLINE: Duration = Duration::from_secs(20);

/// Serves `router` on 127.0.0.1:0 until `stop`.
async fn serve(router: tonic::transport::server::Router, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned()));
    addr
}

#[derive(Clone, Default)]
struct FakeManager {
    lists: Arc<Mutex<Vec<mpb::ListSchedulersRequest>>>,
    /// Scheduler addresses to answer; `None`: NOT_FOUND `no_cluster`.
    schedulers: Arc<Mutex<Option<Vec<SocketAddr>>>>,
    seeds: Arc<Mutex<Vec<mpb::RegisterSeedPeerRequest>>>,
    keepalives: Arc<Mutex<u32>>,
    closed: Arc<Mutex<bool>>,
}

impl FakeManager {
    fn lists(&self) -> usize {
        self.lists.lock().unwrap().len()
    }
}

#[tonic::async_trait]
impl Manager for FakeManager {
    async fn register_scheduler(
        &self,
        _request: Request<mpb::RegisterSchedulerRequest>,
    ) -> Result<Response<mpb::Member>, Status> {
        Err(Status::unimplemented("not a dfdaemon call"))
    }

    async fn register_seed_peer(
        &self,
        request: Request<mpb::RegisterSeedPeerRequest>,
    ) -> Result<Response<mpb::Member>, Status> {
        let r = request.into_inner();
        let host = r.host.clone().unwrap_or_default();
        self.seeds.lock().unwrap().push(r);
        Ok(Response::new(mpb::Member {
            id: 4,
            kind: mpb::MemberKind::SeedPeer as i32,
            hostname: host.hostname,
            ip: host.ip,
            port: host.port,
            download_port: host.download_port,
            cluster_id: 1,
            state: mpb::MemberState::Active as i32,
            ..Default::default()
        }))
    }

    async fn keep_alive(&self, request: Request<Streaming<mpb::KeepAliveRequest>>) -> Result<Response<()>, Status> {
        let mut stream = request.into_inner();
        while let Ok(Some(_)) = stream.message().await {
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
        let Some(schedulers) = self.schedulers.lock().unwrap().clone() else {
            return Err(darter_common::status::with_reason(
                Code::NotFound,
                "no cluster".into(),
                darter_common::status::Reason::NoCluster,
            ));
        };
        let member = |a: SocketAddr| mpb::Member {
            kind: mpb::MemberKind::Scheduler as i32,
            ip: a.ip().to_string(),
            port: u32::from(a.port()),
            cluster_id: 1,
            state: mpb::MemberState::Active as i32,
            ..Default::default()
        };
        Ok(Response::new(mpb::ListSchedulersResponse {
            cluster_id: 1,
            cluster_name: "default".into(),
            schedulers: schedulers.into_iter().map(member).collect(),
            ..Default::default()
        }))
    }
}

/// A scheduler that only records host announcements.
#[derive(Clone, Default)]
struct FakeScheduler {
    announced: Arc<Mutex<u32>>,
}

impl FakeScheduler {
    fn announced(&self) -> u32 {
        *self.announced.lock().unwrap()
    }
}

#[tonic::async_trait]
impl Scheduler for FakeScheduler {
    async fn announce_host(&self, _request: Request<spb::AnnounceHostRequest>) -> Result<Response<()>, Status> {
        *self.announced.lock().unwrap() += 1;
        Ok(Response::new(()))
    }

    async fn leave_host(&self, _request: Request<spb::LeaveHostRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    type AnnouncePeerStream = tokio_stream::Empty<Result<spb::AnnouncePeerResponse, Status>>;

    async fn announce_peer(
        &self,
        _request: Request<Streaming<spb::AnnouncePeerRequest>>,
    ) -> Result<Response<Self::AnnouncePeerStream>, Status> {
        Err(Status::unimplemented("fake scheduler"))
    }

    async fn stat_peer(&self, _request: Request<spb::StatPeerRequest>) -> Result<Response<spb::PeerInfo>, Status> {
        Err(Status::unimplemented("fake scheduler"))
    }

    async fn leave_peer(&self, _request: Request<spb::LeavePeerRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn stat_task(&self, _request: Request<spb::StatTaskRequest>) -> Result<Response<spb::TaskInfo>, Status> {
        Err(Status::unimplemented("fake scheduler"))
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    wait_until(what, DEADLINE, || {
        let holds = f();
        async move { holds }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn schedulers_come_from_the_manager_and_its_last_answer_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let (scheduler_stop, manager_stop) = (CancellationToken::new(), CancellationToken::new());
    let scheduler = FakeScheduler::default();
    let scheduler_addr = serve(
        tonic::transport::Server::builder().add_service(SchedulerServer::new(scheduler.clone())),
        scheduler_stop.clone(),
    )
    .await;
    let manager = FakeManager::default();
    *manager.schedulers.lock().unwrap() = Some(vec![scheduler_addr]);
    let manager_addr = serve(
        tonic::transport::Server::builder().add_service(ManagerServer::new(manager.clone())),
        manager_stop.clone(),
    )
    .await;
    let managers = format!("[{manager_addr}]");
    let env = [
        ("DFDAEMON__MANAGER__ADDRS", managers.as_str()),
        ("DFDAEMON__MANAGER__REFRESH_INTERVAL", "200ms"),
        ("DFDAEMON__HOST__IDC", "idc-a"),
        ("DFDAEMON__SCHEDULER__ANNOUNCE_INTERVAL", "200ms"),
    ];
    let mut daemon = Daemon::start(dir.path(), &env).await;

    until("the daemon announces itself to the scheduler the manager named", || scheduler.announced() >= 1).await;
    let asked = manager.lists.lock().unwrap()[0].clone();
    assert_eq!((asked.ip.as_str(), asked.idc.as_str(), asked.cluster_id), ("127.0.0.1", "idc-a", 0));
    let cached = dir.path().join("data/manager/schedulers.json");
    until("the answer saved", || cached.exists()).await;
    let saved = std::fs::read_to_string(&cached).expect("the answer is saved");
    assert!(saved.contains(&scheduler_addr.to_string()), "{saved}");

    // An answer naming no cluster keeps the list (and the file) as they were.
    *manager.schedulers.lock().unwrap() = None;
    let asked = manager.lists();
    until("two more refreshes", || manager.lists() >= asked + 2).await;
    assert!(daemon.log().contains("keeping the last list"), "{}", daemon.process.log_tail(20));
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), saved);
    let announced = scheduler.announced();
    until("announcements to the same scheduler go on", || scheduler.announced() >= announced + 2).await;

    // The manager is gone: the restarted daemon uses the answer on disk.
    manager_stop.cancel();
    let announced = scheduler.announced();
    daemon.restart().await;
    until("an announcement after the restart", || scheduler.announced() > announced).await;
    let log = daemon.log();
    assert!(log.contains("using the schedulers of the manager's last answer on disk"), "{log}");
    scheduler_stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_peer_registers_with_its_ports_and_says_goodbye() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let manager = FakeManager::default();
    let manager_addr =
        serve(tonic::transport::Server::builder().add_service(ManagerServer::new(manager.clone())), stop.clone()).await;
    let managers = format!("[{manager_addr}]");
    let env = [
        ("DFDAEMON__MANAGER__ADDRS", managers.as_str()),
        ("DFDAEMON__MANAGER__KEEPALIVE_INTERVAL", "100ms"),
        ("DFDAEMON__MANAGER__CLUSTER_ID", "1"),
        ("DFDAEMON__HOST__SEED", "true"),
    ];
    let mut daemon = Daemon::start(dir.path(), &env).await;
    until("keepalives", || *manager.keepalives.lock().unwrap() >= 2).await;
    let registered = manager.seeds.lock().unwrap()[0].clone();
    let host = registered.host.unwrap();
    assert_eq!(registered.cluster_id, 1);
    assert_eq!((host.ip.as_str(), host.download_port), ("127.0.0.1", u32::from(daemon.piece_port)));
    assert!(host.port != 0 && !host.hostname.is_empty(), "{host:?}");
    // No scheduler yet (the manager names none): the daemon still serves, from the origin.
    assert!(daemon.log().contains("no scheduler known until the manager answers"), "{}", daemon.log());

    let status = daemon.process.terminate(DEADLINE).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(*manager.closed.lock().unwrap(), "the keepalive stream was closed on shutdown");
    stop.cancel();
}

#[test]
fn manager_flags_land_in_the_config_and_bad_ones_name_the_field() {
    let dfdaemon =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_dfdaemon")).args(args).output().unwrap();
    let out = dfdaemon(&["--manager", "127.0.0.1:65003", "--manager", "[::1]:65003", "--print-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("- 127.0.0.1:65003") && stdout.contains("- '[::1]:65003'"), "{stdout}");
    assert!(stdout.contains("refresh_interval: 1m"), "{stdout}");
    for (args, field) in [
        (&["--manager", "127.0.0.1"][..], "manager.addrs[0]"),
        (&["--manager", "127.0.0.1:65003", "--manager", "http://m:1"][..], "manager.addrs[1]"),
    ] {
        let out = dfdaemon(&[args, &["--print-config"]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(field), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
