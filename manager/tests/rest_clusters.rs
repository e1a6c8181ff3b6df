//! Clusters over the manager's REST API (`/api/v1`, see docs/manager.md) on
//! 127.0.0.1:0 with a SQLite store: create, read, replace, patch, delete, the
//! default flag, and changes reaching `ListSchedulers` at once.

use darter_proto::manager::v1 as pb;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::members::scheduler;
use support::rest::{assert_time, clusters, create_cluster, id, start};

fn peer(ip: &str) -> pb::ListSchedulersRequest {
    pb::ListSchedulersRequest { hostname: "peer".into(), ip: ip.into(), ..Default::default() }
}

#[tokio::test]
async fn clusters_are_created_read_replaced_patched_and_deleted() {
    let (m, root) = start().await;
    let listed = clusters(&root).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let default = &listed[0];
    assert_eq!((default["name"].as_str(), default["is_default"].as_bool()), (Some("default"), Some(true)));

    let body = json!({"name": "idc-a", "description": "first", "is_default": false,
        "config": {"candidate_parent_limit": 5, "back_to_source_limit": 2, "load_limit": 32},
        "scopes": {"idc": "idc-a|idc-b", "location": "cn|zj|hz", "cidrs": ["10.0.0.0/8"], "hostnames": ["^node-a-"]}});
    let a = create_cluster(&root, body.clone()).await;
    for field in ["name", "description", "is_default", "config", "scopes"] {
        assert_eq!(a[field], body[field], "{field}: {a}");
    }
    assert_time(&a["created_at"]);
    assert_time(&a["updated_at"]);
    let path = format!("/clusters/{}", id(&a));
    assert_eq!(root.get(&path).await.ok(StatusCode::OK), a);
    assert_eq!(clusters(&root).await.as_array().unwrap().len(), 2);

    // PATCH merges nested fields.
    let patched = root.patch(&path, json!({"config": {"load_limit": 7}, "scopes": {"cidrs": []}})).await;
    let patched = patched.ok(StatusCode::OK);
    assert_eq!(patched["config"], json!({"candidate_parent_limit": 5, "back_to_source_limit": 2, "load_limit": 7}));
    assert_eq!(
        patched["scopes"],
        json!({"idc": "idc-a|idc-b", "location": "cn|zj|hz", "cidrs": [], "hostnames": ["^node-a-"]})
    );
    assert_eq!((patched["name"].as_str(), patched["description"].as_str()), (Some("idc-a"), Some("first")));
    assert_eq!(patched["created_at"], a["created_at"]);
    assert_eq!(root.get(&path).await.ok(StatusCode::OK), patched);

    // PUT replaces: absent fields take their defaults.
    let replaced = root.put(&path, json!({"name": "idc-a2", "scopes": {"idc": "x"}})).await.ok(StatusCode::OK);
    assert_eq!((replaced["name"].as_str(), replaced["description"].as_str()), (Some("idc-a2"), Some("")));
    assert_eq!(replaced["scopes"], json!({"idc": "x", "location": "", "cidrs": [], "hostnames": []}));
    assert_eq!(replaced["config"], default["config"]);
    assert_eq!(replaced["is_default"], false);

    // Scopes and config as sub-resources.
    let scopes = json!({"idc": "", "location": "cn", "cidrs": ["192.168.0.0/16"], "hostnames": ["^a$", "^b$"]});
    assert_eq!(root.put(&format!("{path}/scopes"), scopes.clone()).await.ok(StatusCode::OK), scopes);
    assert_eq!(root.get(&format!("{path}/scopes")).await.ok(StatusCode::OK), scopes);
    let partial = root.put(&format!("{path}/scopes"), json!({"location": "us"})).await.ok(StatusCode::OK);
    assert_eq!(partial, json!({"idc": "", "location": "us", "cidrs": [], "hostnames": []}));
    let config = json!({"candidate_parent_limit": 8, "back_to_source_limit": 0, "load_limit": 100});
    assert_eq!(root.put(&format!("{path}/config"), config.clone()).await.ok(StatusCode::OK), config);
    assert_eq!(root.get(&format!("{path}/config")).await.ok(StatusCode::OK), config);
    let partial = root.put(&format!("{path}/config"), json!({"load_limit": 3})).await.ok(StatusCode::OK);
    assert_eq!(
        partial,
        json!({"candidate_parent_limit": 4, "back_to_source_limit": default["config"]["back_to_source_limit"], "load_limit": 3})
    );
    let now = root.get(&path).await.ok(StatusCode::OK);
    assert_eq!((now["config"].clone(), now["scopes"]["location"].clone()), (partial, json!("us")));

    root.delete(&path).await.ok(StatusCode::NO_CONTENT);
    root.get(&path).await.not_found();
    root.delete(&path).await.not_found();
    assert_eq!(clusters(&root).await.as_array().unwrap().len(), 1);
    m.stop().await;
}

#[tokio::test]
async fn the_default_flag_moves_and_the_default_cluster_stays() {
    let (m, root) = start().await;
    let old = m.store.default_cluster().await.unwrap().id;
    let a = create_cluster(&root, json!({"name": "a", "is_default": true})).await;
    assert_eq!(a["is_default"], true);
    let flags = |list: Value| -> Vec<(i64, bool)> {
        list.as_array().unwrap().iter().map(|c| (id(c), c["is_default"].as_bool().unwrap())).collect()
    };
    assert_eq!(flags(clusters(&root).await), vec![(old, false), (id(&a), true)]);

    let b = create_cluster(&root, json!({"name": "b"})).await;
    root.patch(&format!("/clusters/{}", id(&b)), json!({"is_default": true})).await.ok(StatusCode::OK);
    assert_eq!(flags(clusters(&root).await), vec![(old, false), (id(&a), false), (id(&b), true)]);
    // PUT without is_default keeps the flag where it is.
    root.put(&format!("/clusters/{}", id(&b)), json!({"name": "b"})).await.ok(StatusCode::OK);
    assert_eq!(flags(clusters(&root).await), vec![(old, false), (id(&a), false), (id(&b), true)]);

    // The default cluster cannot be deleted (now the old one can).
    root.delete(&format!("/clusters/{}", id(&b))).await.invalid("is_default");
    root.get(&format!("/clusters/{}", id(&b))).await.ok(StatusCode::OK);
    root.delete(&format!("/clusters/{old}")).await.ok(StatusCode::NO_CONTENT);
    assert_eq!(flags(clusters(&root).await), vec![(id(&a), false), (id(&b), true)]);
    m.stop().await;
}

#[tokio::test]
async fn cluster_changes_reach_list_schedulers_at_once() {
    let (m, root) = start().await;
    let grpc = m.client().await;
    let east = create_cluster(&root, json!({"name": "east", "scopes": {"cidrs": ["10.9.0.0/16"]}})).await;
    let e = id(&east);
    let s_east = scheduler(&grpc, "s-east", "10.9.0.1", e).await;
    let s_default = scheduler(&grpc, "s-default", "10.0.0.1", 0).await;
    let list = |ip: &'static str| {
        let mut c = grpc.clone();
        async move { c.list_schedulers(peer(ip)).await.unwrap().into_inner() }
    };

    // Cached answers for a host outside east.
    for _ in 0..2 {
        let r = list("10.7.1.1").await;
        assert_eq!((r.cluster_name.as_str(), r.matched_rule), ("default", pb::MatchRule::Default as i32));
    }
    // PATCH: east now covers the host.
    root.patch(&format!("/clusters/{e}"), json!({"scopes": {"cidrs": ["10.9.0.0/16", "10.7.0.0/16"]}}))
        .await
        .ok(StatusCode::OK);
    let r = list("10.7.1.1").await;
    assert_eq!((r.cluster_name.as_str(), r.matched_rule), ("east", pb::MatchRule::Cidr as i32));
    assert_eq!(r.schedulers, vec![s_east.member.clone()]);
    assert_eq!(u64::from(r.config.unwrap().load_limit), east["config"]["load_limit"].as_u64().unwrap());

    // PUT config: the new limits are handed out at once.
    root.put(&format!("/clusters/{e}/config"), json!({"load_limit": 5, "candidate_parent_limit": 2}))
        .await
        .ok(StatusCode::OK);
    let c = list("10.7.1.1").await.config.unwrap();
    assert_eq!((c.load_limit, c.candidate_parent_limit), (5, 2));

    // PUT scopes: back to the default cluster.
    root.put(&format!("/clusters/{e}/scopes"), json!({"cidrs": ["10.9.0.0/16"]})).await.ok(StatusCode::OK);
    assert_eq!(list("10.7.1.1").await.cluster_name, "default");

    // PUT the cluster, renaming it and taking the host by hostname.
    root.put(&format!("/clusters/{e}"), json!({"name": "east-2", "scopes": {"hostnames": ["^peer$"]}}))
        .await
        .ok(StatusCode::OK);
    let r = list("10.7.1.1").await;
    assert_eq!((r.cluster_name.as_str(), r.matched_rule), ("east-2", pb::MatchRule::Hostname as i32));

    // A new default cluster (no scheduler yet): the host is matched by east's hostname still,
    // but a host matching nothing now finds no cluster.
    create_cluster(&root, json!({"name": "new-default", "is_default": true})).await;
    let err =
        grpc.clone().list_schedulers(pb::ListSchedulersRequest { hostname: "other".into(), ..peer("10.7.1.1") }).await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::NotFound);
    s_east.close().await;
    s_default.close().await;
    m.stop().await;
}
