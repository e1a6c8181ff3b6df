//! The scheduler with a manager (a fake one in this process): it registers
//! and keeps alive, says goodbye on shutdown, and trusts the seed peers the
//! manager lists for its cluster only while they are listed.

mod support;

use std::time::Duration;

use darter_proto::manager::v1 as mpb;
use scheduler::Config;
use support::*;
use testkit::fake_manager::{Event, FakeManager};
use tokio_util::sync::CancellationToken;

/// The cluster the fake manager puts every scheduler in.
const CLUSTER: u64 = 5;

/// The manager's listing of a seed peer at `addr` in [`CLUSTER`].
fn listed_seed(addr: std::net::SocketAddr) -> mpb::Member {
    mpb::Member {
        id: 9,
        kind: mpb::MemberKind::SeedPeer as i32,
        ip: addr.ip().to_string(),
        port: u32::from(addr.port()),
        download_port: 4003,
        cluster_id: CLUSTER,
        state: mpb::MemberState::Active as i32,
        ..Default::default()
    }
}

async fn seed_peer_gauge(scheduler: &Scheduler, n: u32) {
    gauge(scheduler, "scheduler_seed_peers", n).await;
}

async fn gauge(scheduler: &Scheduler, name: &str, n: u32) {
    eventually_some(&format!("{name} {n}"), || async {
        scheduler.metrics().await.contains(&format!("{name} {n}\n")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn manager_listed_seed_peers_count_while_listed() {
    let stop = CancellationToken::new();
    let manager = FakeManager::new(1, CLUSTER);
    manager.state().accept_seed_peers = false;
    let server = manager.serve();
    let manager_addr = server.addr.to_string();
    let seed = FakeSeed::default();
    let seed_addr = seed.serve(stop.clone()).await;
    let mut config = Config::default();
    config.manager.addrs = vec![manager_addr];
    config.manager.keepalive_interval = Duration::from_millis(50);
    config.manager.refresh_interval = Duration::from_millis(50);
    config.host.hostname = Some("sched-1".into());
    let scheduler = Scheduler::start(config).await;

    eventually_some("a few keepalives", || async {
        (manager.state().count(|e| matches!(e, Event::KeepAlive(1))) >= 3).then_some(())
    })
    .await;
    {
        let state = manager.state();
        assert_eq!(
            state.keepalives(),
            state.count(|e| matches!(e, Event::KeepAlive(1))),
            "every keepalive as member 1"
        );
    }
    let registration = manager.state().scheduler_registrations[0].clone();
    assert_eq!(registration.hostname, "sched-1");
    assert_eq!((registration.ip.as_str(), registration.port), ("127.0.0.1", u32::from(scheduler.addr.port())));
    eventually_some("a ListSchedulers for its cluster", || async {
        manager.state().list_requests.iter().any(|l| l.cluster_id == CLUSTER && l.ip == "127.0.0.1").then_some(())
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

    // Listed, the seed that announced is sent tasks; a listed seed that
    // never announced is trusted but not sent any (no host ID, no ports).
    let silent: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    manager.state().seed_peers = vec![listed_seed(seed_addr), listed_seed(silent)];
    seed_peer_gauge(&scheduler, 2).await;
    gauge(&scheduler, "scheduler_seed_peers_announced", 1).await;
    let mut b = Peer::open(&mut client, "host-a", &task_id("http://origin/2"), "peer-2").await;
    b.register(download("http://origin/2")).await;
    let parents = b.next_normal().await.candidate_parents;
    assert!(parents.iter().any(|p| p.is_seed && p.host.as_ref().unwrap().id == "seed-1"), "{parents:?}");
    assert_eq!(seed.calls().len(), 1, "the listed seed was triggered");

    // Gone from the manager's list: no longer a seed, no more triggers.
    manager.state().seed_peers.clear();
    seed_peer_gauge(&scheduler, 0).await;
    gauge(&scheduler, "scheduler_seed_peers_announced", 0).await;
    let mut c = Peer::open(&mut client, "host-a", &task_id("http://origin/3"), "peer-3").await;
    c.register(download("http://origin/3")).await;
    c.next_back_to_source().await;
    assert_eq!(seed.calls().len(), 1);

    drop((a, b, c));
    scheduler.stop().await;
    assert!(manager.state().closed(), "the keepalive stream was closed on shutdown (the goodbye)");
    stop.cancel();
}
