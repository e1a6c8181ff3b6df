//! The manager client against an in-process fake manager on 127.0.0.1:0:
//! membership (register, keepalives, goodbye, reconnect) and `ListSchedulers`
//! failover between manager addresses.

use std::time::Duration;

use darter_common::manager_client::{Managers, Membership, Registration, is_no_cluster};
use darter_proto::manager::v1 as pb;
use testkit::eventually;
use testkit::eventually::DEADLINE;
use testkit::fake_manager::{Event, FakeManager};
use tokio_util::sync::CancellationToken;

/// A fake that registers members as ID 7 in cluster 3, lists one scheduler
/// and knows no cluster for host `nowhere`.
fn fake() -> FakeManager {
    let fake = FakeManager::new(7, 3);
    {
        let mut s = fake.state();
        s.schedulers = Some(vec!["10.0.0.1:8002".parse().unwrap()]);
        s.no_cluster_for = vec!["nowhere".into()];
    }
    fake
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
    testkit::net::refused_addr().to_string()
}

#[tokio::test]
async fn a_member_registers_keeps_alive_and_says_goodbye_on_shutdown() {
    let fake = fake();
    let server = fake.serve();
    let managers = Managers::new(&[server.addr.to_string()], &darter_common::tls::Transport::Plaintext).unwrap();
    let membership = Membership::new(managers, scheduler(), Duration::from_millis(50));
    let mut member = membership.subscribe();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(membership.run(shutdown.clone()));

    member.wait_for(Option::is_some).await.unwrap();
    assert_eq!(member.borrow().as_ref().map(|m| (m.id, m.cluster_id)), Some((7, 3)));
    eventually("three keepalives", || async { fake.state().count(|e| matches!(e, Event::KeepAlive(7))) >= 3 }).await;
    assert_eq!(fake.state().count(|e| matches!(e, Event::Registered(_))), 1, "one registration while healthy");

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, run).await.expect("stops promptly").unwrap();
    eventually("the stream closed (goodbye)", || async { fake.state().events.last() == Some(&Event::Closed(7)) }).await;
}

#[tokio::test]
async fn a_member_registers_again_after_the_manager_restarts() {
    let fake = fake();
    let mut server = fake.serve();
    let addr = server.addr;
    let managers = Managers::new(&[addr.to_string()], &darter_common::tls::Transport::Plaintext).unwrap();
    let membership = Membership::new(managers, scheduler(), Duration::from_millis(50));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(membership.run(shutdown.clone()));
    eventually("a keepalive", || async { fake.state().keepalives() >= 1 }).await;

    server.crash();
    let _restarted = fake.serve_on(addr);
    eventually("a second registration", || async { fake.state().count(|e| matches!(e, Event::Registered(_))) >= 2 })
        .await;
    let before = fake.state().keepalives();
    eventually("keepalives on the new stream", || async { fake.state().keepalives() > before + 1 }).await;

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, run).await.expect("stops promptly").unwrap();
}

#[tokio::test]
async fn a_seed_peer_registers_with_the_first_reachable_manager() {
    let fake = fake();
    let server = fake.serve();
    let managers =
        Managers::new(&[dead_addr().await, server.addr.to_string()], &darter_common::tls::Transport::Plaintext)
            .unwrap();
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
    let fake = fake();
    let server = fake.serve();
    let live = server.addr.to_string();
    let managers =
        Managers::new(&[dead_addr().await, live.clone()], &darter_common::tls::Transport::Plaintext).unwrap();
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

    let unreachable = Managers::new(&[dead_addr().await], &darter_common::tls::Transport::Plaintext).unwrap();
    let status = unreachable.list_schedulers(pb::ListSchedulersRequest::default()).await.unwrap_err();
    assert!(!is_no_cluster(&status));
    assert!(status.message().starts_with("manager 127.0.0.1:"), "{status:?}");
}
