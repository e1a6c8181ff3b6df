//! Two manager replicas on one PostgreSQL database: with a shared Redis cache
//! a change made through one replica is in the other's `ListSchedulers`
//! answers within a second; with in-process caches it is not (which is why
//! several replicas need Redis).
//!
//! Needs `DARTER_TEST_POSTGRES_URL` and `DARTER_TEST_REDIS_URL`; without them
//! the tests print `SKIPPED ...` and pass, unless `CI` is set.

mod support;

use std::time::{Duration, Instant};

use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_client::ManagerClient;
use support::{DEADLINE, ROOT_PASSWORD, TestManager};
use testkit::db::{Backend, ScratchDb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// How fast the other replica must see a change (the bound).
const PROPAGATION: Duration = Duration::from_secs(1);

fn redis_url() -> Option<String> {
    match std::env::var("DARTER_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("DARTER_TEST_REDIS_URL must be set when CI is set"),
        _ => {
            eprintln!("SKIPPED replica test: DARTER_TEST_REDIS_URL not set");
            None
        }
    }
}

/// Two replicas on a fresh PostgreSQL database, sharing Redis when `shared`.
async fn replicas(shared: bool) -> Option<(ScratchDb, TestManager, TestManager)> {
    let redis = if shared { Some(redis_url()?) } else { None };
    let db = testkit::db::fresh(Backend::Postgres).await?;
    let namespace = format!("darter-test-{:016x}", rand::random::<u64>());
    let tweak = |c: &mut manager::Config| {
        c.cache.redis_url = redis.clone();
        c.cache.namespace = namespace.clone();
    };
    let a = TestManager::start_on(&db.url, None, tweak).await;
    let b = TestManager::start_on(&db.url, None, tweak).await;
    Some((db, a, b))
}

/// Registers a scheduler in `cluster_id` and keeps it alive while the sender lives.
async fn scheduler(
    client: &mut ManagerClient<Channel>,
    host: &str,
    cluster_id: u64,
) -> mpsc::Sender<pb::KeepAliveRequest> {
    let req = pb::RegisterSchedulerRequest {
        hostname: host.into(),
        ip: "127.0.0.1".into(),
        port: 8002,
        cluster_id,
        ..Default::default()
    };
    let m = client.register_scheduler(req).await.unwrap().into_inner();
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::KeepAliveRequest { kind: m.kind, member_id: m.id, hostname: m.hostname, ip: m.ip }).await.unwrap();
    let mut c = client.clone();
    tokio::spawn(async move { c.keep_alive(ReceiverStream::new(rx)).await });
    tx
}

async fn answer(client: &mut ManagerClient<Channel>, ip: &str) -> pb::ListSchedulersResponse {
    let req = pb::ListSchedulersRequest { hostname: "peer".into(), ip: ip.into(), ..Default::default() };
    client.list_schedulers(req).await.unwrap().into_inner()
}

/// Waits until `b`'s answer for `ip` satisfies `done`; returns how long it took.
async fn until(
    client: &mut ManagerClient<Channel>,
    ip: &str,
    done: impl Fn(&pb::ListSchedulersResponse) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if done(&answer(client, ip).await) {
            return start.elapsed();
        }
        assert!(start.elapsed() < DEADLINE, "replica never saw the change");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Signs in to `m` as root and sends one JSON request.
async fn rest(m: &TestManager, method: reqwest::Method, path: &str, body: serde_json::Value) -> u16 {
    let http = support::http();
    let sign_in = serde_json::json!({"name": "root", "password": ROOT_PASSWORD});
    let resp = http
        .post(m.url("/users/signin"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&sign_in).unwrap())
        .send()
        .await
        .unwrap();
    let token: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let resp = http
        .request(method, m.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test]
async fn a_change_through_one_replica_is_seen_by_the_other_within_a_second() {
    let Some((db, a, b)) = replicas(true).await else { return };
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let east = a
        .store
        .create_cluster(&manager::store::NewCluster {
            name: "east".into(),
            scopes: manager::store::Scopes { cidrs: vec!["10.0.0.0/8".into()], ..Default::default() },
            ..Default::default()
        })
        .await
        .unwrap();
    let default_id = a.store.default_cluster().await.unwrap().id;
    let _default_scheduler = scheduler(&mut ca, "s-default", u64::try_from(default_id).unwrap()).await;
    let east_scheduler = scheduler(&mut ca, "s-east", u64::try_from(east.id).unwrap()).await;

    // B answers (and caches) the CIDR match.
    let east_id = u64::try_from(east.id).unwrap();
    until(&mut cb, "10.1.2.3", |r| r.cluster_id == east_id && r.schedulers.len() == 1).await;
    assert_eq!(answer(&mut cb, "10.1.2.3").await.matched_rule, pb::MatchRule::Cidr as i32);

    // A cluster change through A's REST API...
    let status = rest(
        &a,
        reqwest::Method::PATCH,
        &format!("/clusters/{}", east.id),
        serde_json::json!({"scopes": {"cidrs": ["192.168.0.0/16"]}}),
    )
    .await;
    assert_eq!(status, 200);
    // ...is in B's answer within a second.
    let took = until(&mut cb, "10.1.2.3", |r| r.matched_rule == pb::MatchRule::Default as i32).await;
    eprintln!("cluster change seen by the other replica after {took:?}");
    assert!(took < PROPAGATION, "cluster change took {took:?} to reach the other replica");

    // A membership change through A (the east scheduler's stream closes) reaches B too.
    until(&mut cb, "192.168.1.1", |r| r.cluster_id == east_id).await;
    drop(east_scheduler);
    let took = until(&mut cb, "192.168.1.1", |r| r.cluster_id != east_id).await;
    eprintln!("membership change seen by the other replica after {took:?}");
    assert!(took < PROPAGATION, "membership change took {took:?} to reach the other replica");

    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn without_redis_each_replica_keeps_its_own_cache() {
    // The control for the test above: only Redis makes the change visible.
    if redis_url().is_none() {
        return;
    }
    let Some((db, a, b)) = replicas(false).await else { return };
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let default_id = a.store.default_cluster().await.unwrap().id;
    let _s = scheduler(&mut ca, "s-default", u64::try_from(default_id).unwrap()).await;
    until(&mut cb, "10.1.2.3", |r| r.matched_rule == pb::MatchRule::Default as i32).await;

    let status = rest(
        &a,
        reqwest::Method::POST,
        "/clusters",
        serde_json::json!({"name": "east", "scopes": {"cidrs": ["10.0.0.0/8"]}}),
    )
    .await;
    assert_eq!(status, 201);
    let east = a.store.get_cluster_by_name("east").await.unwrap();
    let _e = scheduler(&mut ca, "s-east", u64::try_from(east.id).unwrap()).await;
    // A sees it at once; B serves its cached answer until the TTL.
    until(&mut ca, "10.1.2.3", |r| r.matched_rule == pb::MatchRule::Cidr as i32).await;
    tokio::time::sleep(PROPAGATION).await;
    assert_eq!(answer(&mut cb, "10.1.2.3").await.matched_rule, pb::MatchRule::Default as i32);

    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn an_unreachable_redis_stops_the_start_with_a_clear_error() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = manager::Config {
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()),
        ..manager::Config::default()
    };
    config.auth.root_password = Some(ROOT_PASSWORD.into());
    config.cache.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    let listen = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listeners = manager::Listeners {
        grpc: tokio::net::TcpListener::from_std(nonblocking(listen())).unwrap(),
        metrics: tokio::net::TcpListener::from_std(nonblocking(listen())).unwrap(),
        rest: tokio::net::TcpListener::from_std(nonblocking(listen())).unwrap(),
    };
    let result =
        tokio::time::timeout(DEADLINE, manager::run(config, listeners, tokio_util::sync::CancellationToken::new()))
            .await
            .expect("the manager gives up on Redis in time");
    let e = result.unwrap_err().to_string();
    assert!(e.contains("cache.redis_url"), "{e}");
}

fn nonblocking(l: std::net::TcpListener) -> std::net::TcpListener {
    l.set_nonblocking(true).unwrap();
    l
}
