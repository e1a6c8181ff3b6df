//! The manager's REST API (`/api/v1`, see docs/manager.md) refusing what it
//! must: bad requests name the field and write nothing, unknown things and
//! methods are JSON 404s and 405s, duplicate names are 409s.

use reqwest::{Method, StatusCode};
use serde_json::json;

mod support;
use support::rest::{Api, clusters, create_cluster, id, start};

#[tokio::test]
async fn bad_requests_name_the_field_and_write_nothing() {
    let (m, root) = start().await;
    let east = create_cluster(
        &root,
        json!({"name": "east", "scopes": {"idc": "a", "cidrs": ["10.9.0.0/16"]}, "config": {"load_limit": 9}}),
    )
    .await;
    let e = id(&east);
    let (cluster, scopes, config) =
        (format!("/clusters/{e}"), format!("/clusters/{e}/scopes"), format!("/clusters/{e}/config"));
    let default = format!("/clusters/{}", m.store.default_cluster().await.unwrap().id);
    let before = clusters(&root).await;
    let json = Some("application/json");

    // (method, path, content type, body, field)
    let cases: Vec<(Method, &str, Option<&str>, String, &str)> = vec![
        (Method::POST, "/clusters", json, r#"{"name": "west""#.into(), "body"),
        (Method::POST, "/clusters", json, r#"{"name": "west"} {}"#.into(), "body"),
        (Method::POST, "/clusters", json, "[]".into(), "body"),
        (
            Method::POST,
            "/clusters",
            json,
            r#"{"name": "west", "scopes": {"cidrs": "10.0.0.0/8"}}"#.into(),
            "scopes.cidrs",
        ),
        (
            Method::POST,
            "/clusters",
            json,
            r#"{"name": "west", "scopes": {"cidrs": ["10.0.0.0/8", "10.0.0.0/33"]}}"#.into(),
            "scopes.cidrs[1]",
        ),
        (
            Method::POST,
            "/clusters",
            json,
            r#"{"name": "west", "scopes": {"hostnames": ["("]}}"#.into(),
            "scopes.hostnames[0]",
        ),
        (Method::POST, "/clusters", json, r#"{"name": ""}"#.into(), "name"),
        (Method::POST, "/clusters", json, r#"{"name": "  "}"#.into(), "name"),
        (Method::POST, "/clusters", json, r#"{"description": "no name"}"#.into(), "name"),
        (Method::POST, "/clusters", json, r#"{"nmae": "west"}"#.into(), "nmae"),
        (Method::POST, "/clusters", json, r#"{"name": "west", "config": {"lod_limit": 3}}"#.into(), "config.lod_limit"),
        (
            Method::POST,
            "/clusters",
            json,
            r#"{"name": "west", "config": {"load_limit": 0}}"#.into(),
            "config.load_limit",
        ),
        (
            Method::POST,
            "/clusters",
            json,
            r#"{"name": "west", "config": {"load_limit": -1}}"#.into(),
            "config.load_limit",
        ),
        (Method::POST, "/clusters", json, r#"{"name": "west", "is_default": "yes"}"#.into(), "is_default"),
        (Method::POST, "/clusters", None, r#"{"name": "west"}"#.into(), "body"),
        (Method::POST, "/clusters", Some("text/plain"), r#"{"name": "west"}"#.into(), "body"),
        (Method::PUT, &cluster, json, r#"{"scopes": {}}"#.into(), "name"),
        (Method::PUT, &cluster, json, r#"{"name": "east", "scopes": {"cidrs": ["nope"]}}"#.into(), "scopes.cidrs[0]"),
        (
            Method::PATCH,
            &cluster,
            json,
            r#"{"scopes": {"cidrs": ["10.0.0.0/8", "300.0.0.0/8"]}}"#.into(),
            "scopes.cidrs[1]",
        ),
        (Method::PATCH, &cluster, json, r#"{"scopes": {"hostnames": ["ok", "[z-a]"]}}"#.into(), "scopes.hostnames[1]"),
        (Method::PATCH, &cluster, json, r#"{"scopes": {"idc": "a||b"}}"#.into(), "scopes.idc"),
        (
            Method::PATCH,
            &cluster,
            json,
            r#"{"config": {"candidate_parent_limit": 1000}}"#.into(),
            "config.candidate_parent_limit",
        ),
        (Method::PATCH, &cluster, json, r#"{"name": 7}"#.into(), "name"),
        (Method::PATCH, &default, json, r#"{"is_default": false}"#.into(), "is_default"),
        (Method::PATCH, "/clusters/abc", json, r#"{"description": "x"}"#.into(), "id"),
        (Method::PATCH, "/clusters/0", json, r#"{"description": "x"}"#.into(), "id"),
        (Method::DELETE, "/clusters/-1", None, String::new(), "id"),
        (Method::PUT, &scopes, json, r#"{"cidrs": ["10.0.0.0/8", "10.0.0.0/33"]}"#.into(), "cidrs[1]"),
        (Method::PUT, &scopes, json, r#"{"hostnames": "x"}"#.into(), "hostnames"),
        (Method::PUT, &config, json, r#"{"load_limit": 0}"#.into(), "load_limit"),
        (Method::PUT, &config, json, r#"{"load_limit": "many"}"#.into(), "load_limit"),
    ];
    for (method, path, ct, body, field) in cases {
        let shown = format!("{method} {path} {:.80}", body);
        let a = root.raw(method, path, ct, &body).await;
        assert_eq!(a.json["error"]["field"], field, "{shown}: {}", a.text);
        a.invalid(field);
        assert_eq!(clusters(&root).await, before, "{shown} wrote something");
    }

    // A body over rest.max_body_size (64 KiB) is a 413, and writes nothing either.
    let big = format!(r#"{{"name": "west", "description": "{}"}}"#, "x".repeat(70_000));
    root.raw(Method::POST, "/clusters", json, &big).await.err(StatusCode::PAYLOAD_TOO_LARGE, "too_large", None);
    assert_eq!(clusters(&root).await, before, "the oversized body wrote something");

    // Reads name the field too.
    root.get("/clusters/abc").await.invalid("id");
    root.get("/clusters/99999999999999999999").await.invalid("id");
    root.get("/schedulers?state=bogus").await.invalid("state");
    root.get("/schedulers?cluster_id=east").await.invalid("cluster_id");
    root.get("/seed-peers?state=Active").await.invalid("state");
    root.get("/schedulers?colour=red").await.invalid("colour");
    root.get("/match?ip=10.0.0.300").await.invalid("ip");
    root.get("/match?ip=").await.invalid("ip");
    root.get("/users/abc").await.invalid("id");
    root.anonymous().raw(Method::POST, "/users/signin", None, r#"{"name": "root"}"#).await.invalid("body");
    // A missing required field is named too.
    root.anonymous().raw(Method::POST, "/users/signin", json, r#"{"name": "root"}"#).await.invalid("password");
    root.get("/match").await.invalid("ip");
    root.get("/match?hostname=x").await.invalid("ip");
    root.anonymous()
        .raw(Method::POST, "/users/signin", json, r#"{"name": "root", "pasword": "x"}"#)
        .await
        .invalid("pasword");
    m.stop().await;
}

#[tokio::test]
async fn unknown_things_are_json_404s() {
    let (m, root) = start().await;
    for path in [
        "/clusters/999",
        "/clusters/999/scopes",
        "/clusters/999/config",
        "/users/999",
        "/schedulers/999",
        "/seed-peers/999",
    ] {
        let a = root.get(path).await;
        a.not_found();
        assert!(a.message().contains("999"), "{path}: {}", a.text);
    }
    root.put("/clusters/999", json!({"name": "x"})).await.not_found();
    root.patch("/clusters/999", json!({"description": "x"})).await.not_found();
    root.put("/clusters/999/scopes", json!({})).await.not_found();
    root.put("/clusters/999/config", json!({})).await.not_found();
    root.delete("/clusters/999").await.not_found();
    root.delete("/schedulers/999").await.not_found();
    root.delete("/seed-peers/999").await.not_found();
    root.delete("/users/999").await.not_found();
    root.delete("/personal-access-tokens/999").await.not_found();
    root.get("/no-such-route").await.not_found();
    root.anonymous().get("/no-such-route").await.not_found();
    let outside = format!("http://{}/api/v2/clusters", m.rest);
    Api::send(root.http().get(outside)).await.not_found();

    // A known path with a method it does not take: a JSON 405 naming the allowed ones.
    for (method, path, allowed) in [
        (Method::PATCH, "/clusters", "GET,HEAD,POST"),
        (Method::POST, "/clusters/1", "GET,HEAD,PUT,PATCH,DELETE"),
        (Method::GET, "/users/signin", "POST"),
        (Method::DELETE, "/match", "GET,HEAD"),
    ] {
        let a = root.call(method.clone(), path, None).await;
        a.err(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        let allow = a.headers.get(reqwest::header::ALLOW).map(|v| v.to_str().unwrap().to_owned());
        let mut allow: Vec<String> = allow.unwrap_or_default().split(',').map(|m| m.trim().to_owned()).collect();
        let mut want: Vec<String> = allowed.split(',').map(str::to_owned).collect();
        allow.sort();
        want.sort();
        assert_eq!(allow, want, "{method} {path}");
    }
    m.stop().await;
}

#[tokio::test]
async fn duplicate_names_are_409() {
    let (m, root) = start().await;
    let east = create_cluster(&root, json!({"name": "east"})).await;
    let west = create_cluster(&root, json!({"name": "west"})).await;
    let before = clusters(&root).await;
    root.post("/clusters", json!({"name": "east"})).await.err(StatusCode::CONFLICT, "already_exists", None);
    root.post("/clusters", json!({"name": "default"})).await.err(StatusCode::CONFLICT, "already_exists", None);
    let rename = root.patch(&format!("/clusters/{}", id(&west)), json!({"name": "east"})).await;
    rename.err(StatusCode::CONFLICT, "already_exists", None);
    let replace = root.put(&format!("/clusters/{}", id(&east)), json!({"name": "west", "is_default": true})).await;
    replace.err(StatusCode::CONFLICT, "already_exists", None);
    // Nothing changed: not even the default flag, which that PUT would have moved.
    assert_eq!(clusters(&root).await, before);
    m.stop().await;
}
