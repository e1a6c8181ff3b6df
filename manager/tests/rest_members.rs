//! Schedulers, seed peers and `/match` over the manager's REST API
//! (`/api/v1`, see docs/manager.md), with members registered and kept alive
//! over its gRPC API.

use reqwest::StatusCode;
use serde_json::json;

mod support;
use support::members::{scheduler, seed_peer};
use support::rest::{assert_time, create_cluster, id, start};

#[tokio::test]
async fn schedulers_are_listed_and_only_inactive_ones_deleted() {
    let (m, root) = start().await;
    let grpc = m.client().await;
    let east = create_cluster(&root, json!({"name": "east"})).await;
    let s1 = scheduler(&grpc, "s1", "10.0.0.1", id(&east)).await;
    let s2 = scheduler(&grpc, "s2", "10.0.0.2", 0).await;

    let all = root.get("/schedulers").await.ok(StatusCode::OK);
    assert_eq!(all.as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![s1.id(), s2.id()]);
    let one = root.get(&format!("/schedulers/{}", s1.id())).await.ok(StatusCode::OK);
    assert_eq!((one["kind"].as_str(), one["state"].as_str()), (Some("scheduler"), Some("active")));
    assert_eq!(
        (one["hostname"].as_str(), one["ip"].as_str(), one["port"].as_u64()),
        (Some("s1"), Some("10.0.0.1"), Some(8002))
    );
    assert_eq!(one["cluster_id"].as_i64(), Some(id(&east)));
    assert!(one.get("download_port").is_none(), "{one}");
    for t in ["last_keepalive_at", "created_at", "updated_at"] {
        assert_time(&one[t]);
    }
    let in_east = root.get(&format!("/schedulers?cluster_id={}", id(&east))).await.ok(StatusCode::OK);
    assert_eq!(in_east.as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![s1.id()]);
    assert_eq!(root.get("/schedulers?state=inactive").await.ok(StatusCode::OK), json!([]));
    assert_eq!(root.get("/seed-peers").await.ok(StatusCode::OK), json!([]));
    // A scheduler is not a seed peer.
    root.get(&format!("/seed-peers/{}", s1.id())).await.not_found();

    // Active: kept. A cluster with members cannot be deleted either.
    let path = format!("/schedulers/{}", s1.id());
    root.delete(&path).await.err(StatusCode::CONFLICT, "conflict", None);
    root.delete(&format!("/clusters/{}", id(&east))).await.err(StatusCode::CONFLICT, "conflict", None);

    let s1_id = s1.id();
    s1.close().await;
    let inactive = root.get("/schedulers?state=inactive").await.ok(StatusCode::OK);
    assert_eq!(inactive.as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![s1_id]);
    let active = root.get("/schedulers?state=active").await.ok(StatusCode::OK);
    assert_eq!(active.as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![s2.id()]);
    // Still a member of east, inactive or not.
    root.delete(&format!("/clusters/{}", id(&east))).await.err(StatusCode::CONFLICT, "conflict", None);
    root.delete(&path).await.ok(StatusCode::NO_CONTENT);
    root.get(&path).await.not_found();
    root.delete(&path).await.not_found();
    root.delete(&format!("/clusters/{}", id(&east))).await.ok(StatusCode::NO_CONTENT);
    s2.close().await;

    // Seed peers: the same, with their download port.
    let seed = seed_peer(&grpc, "seed1", "10.0.0.3", 0).await;
    let listed = root.get("/seed-peers?state=active").await.ok(StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![seed.id()]);
    let one = root.get(&format!("/seed-peers/{}", seed.id())).await.ok(StatusCode::OK);
    assert_eq!(
        (one["kind"].as_str(), one["port"].as_u64(), one["download_port"].as_u64()),
        (Some("seed_peer"), Some(4000), Some(4001))
    );
    let path = format!("/seed-peers/{}", seed.id());
    root.delete(&path).await.err(StatusCode::CONFLICT, "conflict", None);
    seed.close().await;
    root.delete(&path).await.ok(StatusCode::NO_CONTENT);
    root.get(&path).await.not_found();
    m.stop().await;
}

#[tokio::test]
async fn match_answers_the_cluster_a_host_would_get() {
    let (m, root) = start().await;
    let grpc = m.client().await;
    let east = create_cluster(&root, json!({"name": "east", "scopes": {"cidrs": ["10.9.0.0/16"]}})).await;

    // No active scheduler anywhere.
    root.get("/match?ip=10.9.3.4").await.err(StatusCode::NOT_FOUND, "no_cluster", None);

    let s_east = scheduler(&grpc, "s-east", "10.9.0.1", id(&east)).await;
    let r = root.get("/match?ip=10.9.3.4&hostname=node-1").await.ok(StatusCode::OK);
    assert_eq!((r["cluster"]["id"].as_i64(), r["cluster"]["name"].as_str()), (Some(id(&east)), Some("east")));
    assert_eq!(r["rule"], "cidr");
    // docs/manager.md says the detail is the CIDR itself; it comes as `cidr 10.9.0.0/16`.
    assert!(r["detail"].as_str().is_some_and(|d| d.contains("10.9.0.0/16")), "{}", r["detail"]);
    assert_eq!(r["schedulers"].as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![s_east.id()]);
    assert_eq!(r["seed_peers"], json!([]));

    // Outside the CIDR: the default cluster only once it has an active scheduler.
    let outside = root.get("/match?ip=10.8.3.4").await;
    outside.err(StatusCode::NOT_FOUND, "no_cluster", None);
    let s_default = scheduler(&grpc, "s-default", "10.0.0.1", 0).await;
    let r = root.get("/match?ip=10.8.3.4").await.ok(StatusCode::OK);
    assert_eq!((r["cluster"]["name"].as_str(), r["rule"].as_str()), (Some("default"), Some("default")));
    assert_eq!(r["schedulers"].as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![s_default.id()]);
    // An IPv6 host, and an explicit cluster ID, which wins over the CIDR.
    assert_eq!(root.get("/match?ip=2001:db8::1").await.ok(StatusCode::OK)["rule"], "default");
    let default_id = m.store.default_cluster().await.unwrap().id;
    let r = root.get(&format!("/match?ip=10.9.3.4&cluster_id={default_id}")).await.ok(StatusCode::OK);
    assert_eq!((r["cluster"]["name"].as_str(), r["rule"].as_str()), (Some("default"), Some("cluster_id")));

    // East's scheduler gone: its hosts fall back to the default cluster.
    s_east.close().await;
    assert_eq!(root.get("/match?ip=10.9.3.4").await.ok(StatusCode::OK)["rule"], "default");

    root.get("/match?ip=not-an-ip").await.invalid("ip");
    root.anonymous().get("/match?ip=10.9.3.4").await.unauthenticated();
    s_default.close().await;
    m.stop().await;
}
