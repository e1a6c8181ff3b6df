//! The manager's gRPC API over a real server on 127.0.0.1:0, with a SQLite
//! store in a temporary directory.

use std::time::{Duration, Instant};

use darter_proto::common::v1 as cpb;
use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_client::ManagerClient;
use manager::store::{MemberKind, MemberState, NewCluster, Scopes};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

mod support;
use support::TestManager as Manager;
use support::members::{LiveMember, hold, keepalive};
use support::rest::Api;
use testkit::eventually;
use testkit::metrics::{scrape, value};

fn scheduler(hostname: &str, ip: &str, cluster_id: u64) -> pb::RegisterSchedulerRequest {
    pb::RegisterSchedulerRequest {
        hostname: hostname.into(),
        ip: ip.into(),
        port: 8002,
        cluster_id,
        version: "test".into(),
        ..Default::default()
    }
}

fn peer(hostname: &str, ip: &str) -> pb::ListSchedulersRequest {
    pb::ListSchedulersRequest { hostname: hostname.into(), ip: ip.into(), ..Default::default() }
}

/// Opens a keepalive stream for `m` and sends one keepalive; the stream stays
/// open while the sender lives. The handle yields the call's result.
async fn open_keepalive(
    client: &ManagerClient<Channel>,
    m: &pb::Member,
) -> (mpsc::Sender<pb::KeepAliveRequest>, tokio::task::JoinHandle<Result<(), tonic::Status>>) {
    let LiveMember { tx, call, .. } = hold(client, m.clone()).await;
    (tx, call)
}

#[tokio::test]
async fn registered_scheduler_serves_peers_of_the_default_cluster() {
    let m = Manager::start().await;
    let mut c = m.client().await;

    let err = c.list_schedulers(peer("p1", "192.0.2.10")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "no cluster with an active scheduler matches this peer");

    let s = c.register_scheduler(scheduler("s1", "10.0.0.1", 0)).await.unwrap().into_inner();
    let default = m.store.default_cluster().await.unwrap();
    assert_eq!(s.cluster_id, u64::try_from(default.id).unwrap());
    assert_eq!((s.kind, s.state), (pb::MemberKind::Scheduler as i32, pb::MemberState::Active as i32));
    assert_eq!((s.hostname.as_str(), s.ip.as_str(), s.port), ("s1", "10.0.0.1", 8002));
    assert!(s.last_keepalive_at > 0);

    let seed = c
        .register_seed_peer(pb::RegisterSeedPeerRequest {
            host: Some(cpb::Host {
                hostname: "seed1".into(),
                ip: "10.0.0.2".into(),
                port: 4000,
                download_port: 4001,
                ..Default::default()
            }),
            cluster_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((seed.kind, seed.download_port), (pb::MemberKind::SeedPeer as i32, 4001));

    let r = c.list_schedulers(peer("p1", "192.0.2.10")).await.unwrap().into_inner();
    assert_eq!((r.cluster_id, r.cluster_name.as_str()), (s.cluster_id, "default"));
    assert_eq!(r.matched_rule, pb::MatchRule::Default as i32);
    assert_eq!(r.schedulers, vec![s.clone()]);
    assert_eq!(r.seed_peers, vec![seed]);
    assert_eq!(r.config.unwrap().candidate_parent_limit, 4);

    // Registering again is idempotent: same row.
    let again = c.register_scheduler(scheduler("s1", "10.0.0.1", 0)).await.unwrap().into_inner();
    assert_eq!(again.id, s.id);
    m.stop().await;
}

#[tokio::test]
async fn peer_in_a_cluster_cidr_gets_that_cluster() {
    let m = Manager::start().await;
    let mut c = m.client().await;
    let east = m
        .store
        .create_cluster(&NewCluster {
            name: "east".into(),
            scopes: Scopes { cidrs: vec!["10.9.0.0/16".into()], ..Scopes::default() },
            ..NewCluster::default()
        })
        .await
        .unwrap();
    let east_id = u64::try_from(east.id).unwrap();
    let s_east = c.register_scheduler(scheduler("s-east", "10.9.0.1", east_id)).await.unwrap().into_inner();
    assert_eq!(s_east.cluster_id, east_id);

    let r = c.list_schedulers(peer("p", "10.9.3.4")).await.unwrap().into_inner();
    assert_eq!((r.cluster_id, r.cluster_name.as_str()), (east_id, "east"));
    assert_eq!(r.matched_rule, pb::MatchRule::Cidr as i32);
    assert_eq!(r.schedulers, vec![s_east]);

    // Outside the CIDR: the default cluster has no active scheduler yet.
    let err = c.list_schedulers(peer("p", "10.8.3.4")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let s_default = c.register_scheduler(scheduler("s-default", "10.0.0.1", 0)).await.unwrap().into_inner();
    let r = c.list_schedulers(peer("p", "10.8.3.4")).await.unwrap().into_inner();
    assert_eq!((r.matched_rule, r.schedulers), (pb::MatchRule::Default as i32, vec![s_default]));

    // An explicit cluster ID wins over CIDR.
    let mut explicit = peer("p", "10.9.3.4");
    explicit.cluster_id = r.cluster_id;
    let r = c.list_schedulers(explicit).await.unwrap().into_inner();
    assert_eq!(r.matched_rule, pb::MatchRule::ClusterId as i32);
    m.stop().await;
}

#[tokio::test]
async fn closing_the_keepalive_stream_makes_the_member_inactive_at_once() {
    let m = Manager::start().await;
    let mut c = m.client().await;
    let east = m
        .store
        .create_cluster(&NewCluster {
            name: "east".into(),
            scopes: Scopes { cidrs: vec!["10.9.0.0/16".into()], ..Scopes::default() },
            ..NewCluster::default()
        })
        .await
        .unwrap();
    let s_east = c
        .register_scheduler(scheduler("s-east", "10.9.0.1", u64::try_from(east.id).unwrap()))
        .await
        .unwrap()
        .into_inner();
    let s_default = c.register_scheduler(scheduler("s-default", "10.0.0.1", 0)).await.unwrap().into_inner();

    // Close: the call answers only after the member is marked.
    let (tx, call) = open_keepalive(&c, &s_east).await;
    tx.send(keepalive(&s_east)).await.unwrap();
    drop(tx);
    call.await.unwrap().unwrap();
    assert_eq!(m.state(MemberKind::Scheduler, s_east.id).await, MemberState::Inactive);
    let r = c.list_schedulers(peer("p", "10.9.3.4")).await.unwrap().into_inner();
    assert_eq!((r.matched_rule, r.schedulers), (pb::MatchRule::Default as i32, vec![s_default.clone()]));

    // Reset (the client goes away mid-call): marked as soon as the reset
    // arrives. Marked inactive first, so the stream's keepalive is observable.
    let id = i64::try_from(s_default.id).unwrap();
    m.store.mark_inactive(MemberKind::Scheduler, id, manager::store::Timestamp::now()).await.unwrap();
    let (tx, call) = open_keepalive(&c, &s_default).await;
    eventually("the keepalive stream is being served", || async {
        m.state(MemberKind::Scheduler, s_default.id).await == MemberState::Active
    })
    .await;
    call.abort();
    let _ = call.await;
    drop(tx);
    eventually("reset stream marks the member inactive", || async {
        m.state(MemberKind::Scheduler, s_default.id).await == MemberState::Inactive
    })
    .await;
    let err = c.list_schedulers(peer("p", "10.9.3.4")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    m.stop().await;
}

#[tokio::test]
async fn silent_member_expires_within_grace_and_registering_revives_it() {
    let grace = Duration::from_millis(300);
    let m = Manager::start_with(|c| c.keepalive_grace = grace).await;
    let mut c = m.client().await;
    let s = c.register_scheduler(scheduler("s1", "10.0.0.1", 0)).await.unwrap().into_inner();
    let started = Instant::now();
    // The stream stays open (the sender lives) but says nothing more.
    let (tx, call) = open_keepalive(&c, &s).await;
    eventually("silent member becomes inactive", || async {
        m.state(MemberKind::Scheduler, s.id).await == MemberState::Inactive
    })
    .await;
    assert!(started.elapsed() >= grace, "expired before the grace period ran out");
    assert!(!call.is_finished(), "the stream is still open");
    let err = c.list_schedulers(peer("p", "192.0.2.1")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A keepalive on the open stream revives it.
    tx.send(keepalive(&s)).await.unwrap();
    eventually("keepalive revives the member", || async {
        m.state(MemberKind::Scheduler, s.id).await == MemberState::Active
    })
    .await;
    drop(tx);
    call.await.unwrap().unwrap();
    assert_eq!(m.state(MemberKind::Scheduler, s.id).await, MemberState::Inactive);

    // So does registering again.
    let again = c.register_scheduler(scheduler("s1", "10.0.0.1", 0)).await.unwrap().into_inner();
    assert_eq!((again.id, again.state), (s.id, pb::MemberState::Active as i32));
    let r = c.list_schedulers(peer("p", "192.0.2.1")).await.unwrap().into_inner();
    assert_eq!(r.schedulers.len(), 1);
    m.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_clear_codes() {
    let m = Manager::start().await;
    let mut c = m.client().await;
    let bad = |code: Code, field: &'static str| {
        move |r: Result<tonic::Response<pb::Member>, tonic::Status>| {
            let err = r.unwrap_err();
            assert_eq!(err.code(), code, "{err:?}");
            assert!(err.message().contains(field), "{field} not named in {:?}", err.message());
        }
    };
    bad(Code::InvalidArgument, "ip")(c.register_scheduler(scheduler("s1", "10.0.0", 0)).await);
    bad(Code::InvalidArgument, "hostname")(c.register_scheduler(scheduler(" ", "10.0.0.1", 0)).await);
    bad(Code::InvalidArgument, "port")(
        c.register_scheduler(pb::RegisterSchedulerRequest { port: 0, ..scheduler("s1", "10.0.0.1", 0) }).await,
    );
    bad(Code::NotFound, "cluster 999")(c.register_scheduler(scheduler("s1", "10.0.0.1", 999)).await);
    bad(Code::InvalidArgument, "host")(c.register_seed_peer(pb::RegisterSeedPeerRequest::default()).await);
    let no_download = pb::RegisterSeedPeerRequest {
        host: Some(cpb::Host { hostname: "seed".into(), ip: "10.0.0.2".into(), port: 4000, ..Default::default() }),
        cluster_id: 0,
    };
    bad(Code::InvalidArgument, "host.download_port")(c.register_seed_peer(no_download).await);

    let err = c.list_schedulers(peer("p", "not-an-ip")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("ip"));

    // Keepalives must name an existing member with its hostname and IP.
    let s = c.register_scheduler(scheduler("s1", "10.0.0.1", 0)).await.unwrap().into_inner();
    let stream = |req: pb::KeepAliveRequest| tokio_stream::iter(vec![req]);
    let err = c.keep_alive(stream(pb::KeepAliveRequest { member_id: 12345, ..keepalive(&s) })).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c.keep_alive(stream(pb::KeepAliveRequest { ip: "10.0.0.9".into(), ..keepalive(&s) })).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .keep_alive(stream(pb::KeepAliveRequest { kind: pb::MemberKind::Unspecified as i32, ..keepalive(&s) }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Refused keepalives for another member do not touch this one.
    assert_eq!(m.state(MemberKind::Scheduler, s.id).await, MemberState::Active);
    // A second member on one stream is refused, and the first is marked inactive.
    let other = c.register_scheduler(scheduler("s2", "10.0.0.2", 0)).await.unwrap().into_inner();
    let err = c.keep_alive(tokio_stream::iter(vec![keepalive(&s), keepalive(&other)])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(m.state(MemberKind::Scheduler, s.id).await, MemberState::Inactive);
    m.stop().await;
}

#[tokio::test]
async fn answers_and_requests_are_counted_in_metrics() {
    let m = Manager::start().await;
    let mut c = m.client().await;
    let s = c.register_scheduler(scheduler("s1", "10.0.0.1", 0)).await.unwrap().into_inner();
    let (_tx, _call) = open_keepalive(&c, &s).await;
    c.list_schedulers(peer("p1", "192.0.2.10")).await.unwrap();
    c.list_schedulers(peer("p1", "192.0.2.10")).await.unwrap();
    let status = Api::new(&m).get("/clusters").await.status;
    assert_eq!(status.as_u16(), 401);
    let text = scrape(m.metrics).await.unwrap();
    for series in [
        r#"manager_list_schedulers_total{result="database"}"#,
        r#"manager_list_schedulers_total{result="cache"}"#,
        r#"manager_http_requests_total{method="GET",route="/api/v1/clusters",status="401"}"#,
        r#"manager_cache_invalidations_total{cause="member registered"}"#,
    ] {
        assert_eq!(value(&text, series), Some(1.0), "{series} in\n{text}");
    }
    m.stop().await;
}
