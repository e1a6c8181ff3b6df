//! A dfdaemon process with a manager (a fake one in this process): it takes
//! its schedulers from `ListSchedulers`, keeps the last good answer on disk
//! and uses it when the manager is down, never lets an empty answer wipe a
//! good list, and a seed peer registers and keeps alive.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use darter_proto::scheduler::v1 as spb;
use darter_proto::scheduler::v1::scheduler_server::{Scheduler, SchedulerServer};
use support::Daemon;
use testkit::eventually::eventually;
use testkit::fake_manager::{Event, FakeManager};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// The fake manager a dfdaemon talks to: it lists schedulers and takes seed
/// peers, never schedulers.
fn fake_manager() -> FakeManager {
    let manager = FakeManager::new(4, 1);
    let mut state = manager.state();
    state.accept_schedulers = false;
    // A manager that knows the daemon's cluster lists it; until a test says so, it does not.
    state.schedulers = None;
    drop(state);
    manager
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

    /// Serves it on 127.0.0.1:0 until `stop`.
    async fn serve(&self, stop: CancellationToken) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder().add_service(SchedulerServer::new(self.clone()));
        tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned()));
        addr
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

#[tokio::test(flavor = "multi_thread")]
async fn schedulers_come_from_the_manager_and_its_last_answer_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler_stop = CancellationToken::new();
    let scheduler = FakeScheduler::default();
    let scheduler_addr = scheduler.serve(scheduler_stop.clone()).await;
    let manager = fake_manager();
    manager.state().schedulers = Some(vec![scheduler_addr]);
    let mut manager_server = manager.serve();
    let managers = format!("[{}]", manager_server.addr);
    let env = [
        ("DFDAEMON__MANAGER__ADDRS", managers.as_str()),
        ("DFDAEMON__MANAGER__REFRESH_INTERVAL", "200ms"),
        ("DFDAEMON__HOST__IDC", "idc-a"),
        ("DFDAEMON__SCHEDULER__ANNOUNCE_INTERVAL", "200ms"),
    ];
    let mut daemon = Daemon::start(dir.path(), &env).await;

    eventually("the daemon announces itself to the scheduler the manager named", || async {
        scheduler.announced() >= 1
    })
    .await;
    let asked = manager.state().list_requests[0].clone();
    assert_eq!((asked.ip.as_str(), asked.idc.as_str(), asked.cluster_id), ("127.0.0.1", "idc-a", 0));
    let cached = dir.path().join("data/manager/schedulers.json");
    eventually("the answer saved", || async { cached.exists() }).await;
    let saved = std::fs::read_to_string(&cached).expect("the answer is saved");
    assert!(saved.contains(&scheduler_addr.to_string()), "{saved}");

    // An answer naming no cluster keeps the list (and the file) as they were.
    manager.state().schedulers = None;
    let asked = manager.state().list_requests.len();
    eventually("two more refreshes", || async { manager.state().list_requests.len() >= asked + 2 }).await;
    assert!(daemon.log().contains("keeping the last list"), "{}", daemon.process.log_tail(20));
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), saved);
    let announced = scheduler.announced();
    eventually("announcements to the same scheduler go on", || async { scheduler.announced() >= announced + 2 }).await;

    // The manager is gone: the restarted daemon uses the answer on disk.
    manager_server.crash();
    let announced = scheduler.announced();
    daemon.restart().await;
    eventually("an announcement after the restart", || async { scheduler.announced() > announced }).await;
    let log = daemon.log();
    assert!(log.contains("using the schedulers of the manager's last answer on disk"), "{log}");
    scheduler_stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_peer_registers_with_its_ports_and_says_goodbye() {
    let dir = tempfile::tempdir().unwrap();
    let manager = fake_manager();
    let manager_server = manager.serve();
    let managers = format!("[{}]", manager_server.addr);
    let env = [
        ("DFDAEMON__MANAGER__ADDRS", managers.as_str()),
        ("DFDAEMON__MANAGER__KEEPALIVE_INTERVAL", "100ms"),
        ("DFDAEMON__MANAGER__CLUSTER_ID", "1"),
        ("DFDAEMON__HOST__SEED", "true"),
    ];
    let mut daemon = Daemon::start(dir.path(), &env).await;
    eventually("keepalives", || async { manager.state().keepalives() >= 2 }).await;
    let registered = manager.state().seed_peer_registrations[0].clone();
    let host = registered.host.unwrap();
    assert_eq!(registered.cluster_id, 1);
    assert_eq!((host.ip.as_str(), host.download_port), ("127.0.0.1", u32::from(daemon.piece_port)));
    assert!(host.port != 0 && !host.hostname.is_empty(), "{host:?}");
    {
        let state = manager.state();
        assert_eq!(state.count(|e| matches!(e, Event::Registered(_))), 1, "{:?}", state.events);
        assert_eq!(state.keepalives(), state.count(|e| *e == Event::KeepAlive(4)), "as the member it was made");
    }
    // No scheduler yet (the manager names none): the daemon still serves, from the origin.
    assert!(daemon.log().contains("no scheduler known until the manager answers"), "{}", daemon.log());

    let status = daemon.terminate().await;
    assert!(status.success(), "{status}");
    assert!(manager.state().closed(), "the keepalive stream was closed on shutdown");
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
