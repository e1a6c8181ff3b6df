//! The cluster wired through the manager, end to end with real binaries on
//! loopback: the scheduler and the seed peer register with the manager and
//! keep alive, dfdaemons find the scheduler through it only, members that die
//! or stall drop out within the grace period, and a manager outage does not
//! stop a restarted peer from downloading through the swarm.

use std::path::Path;
use std::time::{Duration, Instant};

use testkit::cluster::{Cluster, ClusterOptions, SchedulerProcess};
use testkit::dfdaemon::{DaemonProcess, DfgetRun, bin_dir, tail};
use testkit::eventually::wait_until;
use testkit::manager::ManagerProcess;
use testkit::origin::{Behavior, Content, Origin};
use testkit::process::signal;
use testkit::{random_bytes, sha256_file, sha256_hex};

const MIB: usize = 1 << 20;
/// Bound on any wait that is not itself under test.
const DEADLINE: Duration = Duration::from_secs(30);
/// The manager's grace period in these tests.
const GRACE: Duration = Duration::from_secs(2);

async fn dfget(daemon: &DaemonProcess, url: &str, out: &Path) -> DfgetRun {
    daemon.dfget(url, out, &["--timeout", "2m"]).await
}

/// Every peer downloads `url` at once; each must succeed with `expected` and
/// get bytes from other peers (not only the origin).
async fn all_download_from_the_swarm(cluster: &Cluster, url: &str, dir: &Path, expected: &str) {
    let runs = futures::future::join_all(cluster.peers.iter().enumerate().map(|(i, p)| {
        let out = dir.join(format!("out-{i}"));
        async move { (out.clone(), dfget(p, url, &out).await) }
    }))
    .await;
    for (out, r) in &runs {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(cluster));
        assert_eq!(sha256_file(out).unwrap(), expected, "{}", out.display());
        assert!(!r.stderr.contains("peers 0 B"), "bytes came from the swarm: {}\n{}", r.stderr, logs(cluster));
    }
}

fn logs(cluster: &Cluster) -> String {
    cluster.logs()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_wired_through_the_manager_downloads_and_lists_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&ClusterOptions::new(dir.path(), &bin_dir(), 2).with_manager()).await.unwrap();
    let manager = cluster.manager.as_ref().unwrap();
    let origin = Origin::start().await;
    let size = 32 * MIB;
    let data = random_bytes(size, 41);
    let expected = sha256_hex(&data);
    origin.add("/f", Content::Bytes(data), Behavior::default());

    all_download_from_the_swarm(&cluster, &origin.url("/f"), dir.path(), &expected).await;
    let sent = origin.total_body_bytes();
    assert!(sent as f64 <= size as f64 * 1.05, "the origin served one copy, not {sent} bytes\n{}", logs(&cluster));
    for p in &cluster.peers {
        assert!(p.log().contains("schedulers from the manager"), "found through the manager\n{}", p.log_tail(20));
    }

    // The manager hands out the scheduler and the seed peer, both active.
    let answer = manager.list_schedulers().await.unwrap();
    let active = darter_proto::manager::v1::MemberState::Active as i32;
    let scheduler_port = u32::from(cluster.scheduler.addr.port());
    assert!(
        answer.schedulers.iter().any(|s| s.port == scheduler_port && s.ip == "127.0.0.1" && s.state == active),
        "{answer:?}"
    );
    let seed = cluster.seed.as_ref().unwrap();
    assert!(
        answer.seed_peers.iter().any(|s| s.port == u32::from(seed.upload_addr().port()) && s.state == active),
        "{answer:?}"
    );
}

/// Whether the manager hands out a scheduler on `port` (no cluster at all
/// counts as "not handed out").
async fn listed(manager: &ManagerProcess, port: u16) -> Option<bool> {
    match manager.list_schedulers().await {
        Ok(r) => Some(r.schedulers.iter().any(|s| s.port == u32::from(port))),
        Err(s) if darter_common::manager_client::is_no_cluster(&s) => Some(false),
        Err(_) => None,
    }
}

async fn expect_listed(manager: &ManagerProcess, scheduler: &SchedulerProcess, want: bool, within: Duration) {
    let started = Instant::now();
    let port = scheduler.addr.port();
    let what = if want { "the scheduler handed out" } else { "the scheduler no longer handed out" };
    if let Err(e) = wait_until(what, within, || async { listed(manager, port).await == Some(want) }).await {
        panic!("{e}\n--- manager ---\n{}\n--- scheduler ---\n{}", manager.log_tail(20), tail(&scheduler.log_path, 20));
    }
    eprintln!("{what} after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_that_dies_or_stalls_drops_out_within_the_grace_period_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MANAGER__KEEPALIVE_GRACE".to_string(), format!("{}s", GRACE.as_secs())),
        ("MANAGER__EXPIRY_INTERVAL".to_string(), "100ms".to_string()),
    ];
    let manager =
        ManagerProcess::start(&bin_dir().join("manager"), &dir.path().join("manager"), &env, "darter-test-root")
            .await
            .unwrap();
    let args = ["--manager".to_string(), manager.grpc_addr.to_string()];
    let mut scheduler_env = manager.join("scheduler", None).await.unwrap().env("SCHEDULER");
    scheduler_env.push(("SCHEDULER__MANAGER__KEEPALIVE_INTERVAL".to_string(), "500ms".to_string()));
    let mut scheduler = SchedulerProcess::start_with_args(
        &bin_dir().join("scheduler"),
        &dir.path().join("scheduler"),
        &args,
        &scheduler_env,
    )
    .await
    .unwrap();
    expect_listed(&manager, &scheduler, true, DEADLINE).await;
    registrations_logged(&scheduler, 1).await;

    // Killed (no goodbye): the manager sees the connection reset.
    scheduler.kill();
    expect_listed(&manager, &scheduler, false, GRACE + Duration::from_secs(1)).await;
    scheduler.restart().await.unwrap();
    expect_listed(&manager, &scheduler, true, DEADLINE).await;
    registrations_logged(&scheduler, 2).await;

    // Stopped: the stream stays open but keepalives stop; the grace period
    // decides. (Should the test fail here, dropping the guard SIGKILLs the
    // stopped process all the same.)
    let pid = scheduler.pid().unwrap();
    signal(pid, "STOP").unwrap();
    expect_listed(&manager, &scheduler, false, GRACE + Duration::from_secs(1)).await;
    signal(pid, "CONT").unwrap();
    expect_listed(&manager, &scheduler, true, DEADLINE).await;
    let log = std::fs::read_to_string(&scheduler.log_path).unwrap();
    assert_eq!(
        log.matches(REGISTERED).count(),
        2,
        "resumed by a keepalive on its open stream, not by registering again:\n{log}\n--- manager ---\n{}",
        manager.log_tail(30)
    );
}

/// What the scheduler logs when the manager accepted its registration.
const REGISTERED: &str = "registered with the manager as a scheduler";

/// Waits until the scheduler's log shows `n` registrations (so the process
/// handled the answer and opened its keepalive stream before the test acts).
async fn registrations_logged(scheduler: &SchedulerProcess, n: usize) {
    let path = scheduler.log_path.clone();
    let logged = wait_until("the registration in the scheduler's log", DEADLINE, || async {
        std::fs::read_to_string(&path).unwrap_or_default().matches(REGISTERED).count() >= n
    })
    .await;
    logged.unwrap_or_else(|e| panic!("{e}\n{}", tail(&path, 20)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_restarted_during_a_manager_outage_downloads_from_its_last_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&ClusterOptions::new(dir.path(), &bin_dir(), 2).with_manager()).await.unwrap();
    // Every peer has had one good answer (a peer serves its socket only after
    // its first one, but the socket accepts connections before that).
    for i in 0..2 {
        let answer = dir.path().join(format!("peer-{i}/data/manager/schedulers.json"));
        wait_until("the peer to save the manager's answer", DEADLINE, || async { answer.exists() }).await.unwrap();
    }

    cluster.manager.as_mut().unwrap().kill();
    cluster.peers[0].restart().await.unwrap();
    let peer = &cluster.peers[0];
    let from_disk = wait_until("peer 0 to use the answer on disk", DEADLINE, || async {
        peer.log().contains("using the schedulers of the manager's last answer on disk")
    })
    .await;
    from_disk.unwrap_or_else(|e| panic!("{e}\n{}", peer.log_tail(20)));

    let origin = Origin::start().await;
    let size = 16 * MIB;
    let data = random_bytes(size, 42);
    let expected = sha256_hex(&data);
    origin.add("/g", Content::Bytes(data), Behavior::default());
    all_download_from_the_swarm(&cluster, &origin.url("/g"), dir.path(), &expected).await;
    let sent = origin.total_body_bytes();
    assert!(sent as f64 <= size as f64 * 1.05, "the origin served one copy, not {sent} bytes\n{}", logs(&cluster));
}
