//! Users and roles over the manager's REST API (`/api/v1`, see
//! docs/manager.md) on 127.0.0.1:0 with a SQLite store: what guests may do,
//! passwords, the last root, and no secret in any answer.

use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::ROOT_PASSWORD;
use support::members::scheduler;
use support::rest::{assert_time, clusters, create_cluster, create_user, guest, id, start};

#[tokio::test]
async fn guests_read_everything_and_write_nothing_but_their_own() {
    let (m, root) = start().await;
    let grpc = m.client().await;
    let east = create_cluster(&root, json!({"name": "east", "scopes": {"cidrs": ["10.9.0.0/16"]}})).await;
    let s = scheduler(&grpc, "s-east", "10.9.0.1", id(&east)).await;
    let (guest_id, guest) = guest(&root).await;

    let e = id(&east);
    for path in [
        "/clusters".to_owned(),
        format!("/clusters/{e}"),
        format!("/clusters/{e}/scopes"),
        format!("/clusters/{e}/config"),
        "/schedulers".to_owned(),
        format!("/schedulers/{}", s.id()),
        "/seed-peers".to_owned(),
        "/users".to_owned(),
        "/users/1".to_owned(),
        "/users/me".to_owned(),
        "/roles".to_owned(),
        "/personal-access-tokens".to_owned(),
    ] {
        let a = guest.get(&path).await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.text);
    }
    let matched = guest.get("/match?ip=10.9.3.4").await.ok(StatusCode::OK);
    assert_eq!(matched["cluster"]["name"], "east");
    assert_eq!(guest.get("/users/me").await.ok(StatusCode::OK)["role"], "guest");

    let before = clusters(&root).await;
    let cluster = json!({"name": "west"});
    guest.post("/clusters", cluster.clone()).await.forbidden();
    guest.put(&format!("/clusters/{e}"), cluster.clone()).await.forbidden();
    guest.patch(&format!("/clusters/{e}"), json!({"description": "mine"})).await.forbidden();
    guest.put(&format!("/clusters/{e}/scopes"), json!({"cidrs": ["0.0.0.0/0"]})).await.forbidden();
    guest.put(&format!("/clusters/{e}/config"), json!({"load_limit": 1})).await.forbidden();
    guest.delete(&format!("/clusters/{e}")).await.forbidden();
    guest.delete(&format!("/schedulers/{}", s.id())).await.forbidden();
    guest.delete("/seed-peers/1").await.forbidden();
    guest.post("/users", json!({"name": "eve", "password": "eve-password", "role": "root"})).await.forbidden();
    guest.patch(&format!("/users/{guest_id}"), json!({"role": "root"})).await.forbidden();
    guest.delete("/users/1").await.forbidden();
    guest.put("/users/1/password", json!({"new_password": "taken-over!"})).await.forbidden();
    assert_eq!(clusters(&root).await, before);
    assert_eq!(guest.get("/users/me").await.ok(StatusCode::OK)["role"], "guest");
    assert_eq!(root.get("/users").await.ok(StatusCode::OK).as_array().unwrap().len(), 2);

    // What is the guest's own: tokens and session.
    let pat = guest.post("/personal-access-tokens", json!({"name": "mine"})).await.ok(StatusCode::CREATED);
    assert_eq!(pat["user_id"].as_i64(), Some(guest_id));
    let guest_pat = root.with(pat["token"].as_str().unwrap());
    // A guest's token carries the guest role.
    guest_pat.post("/clusters", json!({"name": "west"})).await.forbidden();
    guest_pat.delete(&format!("/personal-access-tokens/{}", id(&pat))).await.ok(StatusCode::NO_CONTENT);
    guest.post("/users/signout", json!({})).await.ok(StatusCode::NO_CONTENT);
    guest.get("/users/me").await.unauthenticated();
    s.close().await;
    m.stop().await;
}

#[tokio::test]
async fn passwords_change_with_the_old_one_or_by_root() {
    let (m, root) = start().await;
    let (guest_id, guest) = guest(&root).await;
    let path = format!("/users/{guest_id}/password");

    guest.put(&path, json!({"new_password": "new-guest-password"})).await.invalid("old_password");
    let wrong = guest.put(&path, json!({"old_password": "not-it", "new_password": "new-guest-password"})).await;
    wrong.invalid("old_password");
    guest.put(&path, json!({"old_password": "guest-password", "new_password": "short"})).await.invalid("new_password");
    // Nothing changed so far.
    root.sign_in("guest", "guest-password").await;

    let ok = guest.put(&path, json!({"old_password": "guest-password", "new_password": "new-guest-password"})).await;
    ok.ok(StatusCode::NO_CONTENT);
    root.sign_in_answer("guest", "guest-password").await.unauthenticated();
    root.sign_in("guest", "new-guest-password").await;

    // Root resets it without the old one.
    root.put(&path, json!({"new_password": "reset-by-root"})).await.ok(StatusCode::NO_CONTENT);
    root.sign_in_answer("guest", "new-guest-password").await.unauthenticated();
    root.sign_in("guest", "reset-by-root").await;
    // ... but changing its own needs the old one too.
    root.put("/users/1/password", json!({"new_password": "new-root-password"})).await.invalid("old_password");
    // Through PATCH as well.
    root.patch(&format!("/users/{guest_id}"), json!({"password": "patched-password"})).await.ok(StatusCode::OK);
    root.sign_in("guest", "patched-password").await;
    root.patch(&format!("/users/{guest_id}"), json!({"password": "short"})).await.invalid("password");

    root.put("/users/999/password", json!({"new_password": "whatever-long"})).await.not_found();
    m.stop().await;
}

#[tokio::test]
async fn the_last_root_cannot_be_deleted_or_demoted() {
    let (m, root) = start().await;
    root.delete("/users/1").await.err(StatusCode::CONFLICT, "conflict", None);
    root.patch("/users/1", json!({"role": "guest"})).await.err(StatusCode::CONFLICT, "conflict", None);
    assert_eq!(root.get("/users/me").await.ok(StatusCode::OK)["role"], "root");

    // With a second root, the first may go; then the second is the last.
    let (guest_id, guest) = guest(&root).await;
    let promoted = root.patch(&format!("/users/{guest_id}"), json!({"role": "root"})).await.ok(StatusCode::OK);
    assert_eq!(promoted["role"], "root");
    // A role change takes effect for tokens already handed out.
    create_cluster(&guest, json!({"name": "by-the-promoted-guest"})).await;
    guest.patch("/users/1", json!({"role": "guest"})).await.ok(StatusCode::OK);
    root.post("/clusters", json!({"name": "by-the-demoted-root"})).await.forbidden();
    guest.delete(&format!("/users/{guest_id}")).await.err(StatusCode::CONFLICT, "conflict", None);
    guest.delete("/users/1").await.ok(StatusCode::NO_CONTENT);
    // A deleted user's tokens stop working.
    root.get("/users/me").await.unauthenticated();
    guest.get("/users/1").await.not_found();
    m.stop().await;
}

#[tokio::test]
async fn users_are_created_listed_and_deleted_by_root() {
    let (m, root) = start().await;
    let id = create_user(&root, "alice", "alice-password", "guest").await;
    let alice = root.get(&format!("/users/{id}")).await.ok(StatusCode::OK);
    assert_eq!((alice["name"].as_str(), alice["role"].as_str()), (Some("alice"), Some("guest")));
    assert_time(&alice["created_at"]);
    let names: Vec<Value> =
        root.get("/users").await.ok(StatusCode::OK).as_array().unwrap().iter().map(|u| u["name"].clone()).collect();
    assert_eq!(names, vec![json!("root"), json!("alice")]);
    let roles = root.get("/roles").await.ok(StatusCode::OK);
    let role_names: Vec<&str> = roles.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(role_names, vec!["root", "guest"]);

    root.post("/users", json!({"name": "alice", "password": "other-password", "role": "root"})).await.err(
        StatusCode::CONFLICT,
        "already_exists",
        None,
    );
    root.post("/users", json!({"name": "bob", "password": "bob-password", "role": "admin"})).await.invalid("role");
    root.post("/users", json!({"name": "bob", "password": "short", "role": "guest"})).await.invalid("password");
    root.post("/users", json!({"name": "", "password": "bob-password", "role": "guest"})).await.invalid("name");
    root.post("/users", json!({"name": "bob", "password": "bob-password"})).await.invalid("role");
    assert_eq!(root.get("/users").await.ok(StatusCode::OK).as_array().unwrap().len(), 2);

    let alice_session = root.sign_in("alice", "alice-password").await;
    let pat = alice_session.post("/personal-access-tokens", json!({"name": "alice's"})).await.ok(StatusCode::CREATED);
    let alice_pat = root.with(pat["token"].as_str().unwrap());
    alice_pat.get("/users/me").await.ok(StatusCode::OK);
    root.delete(&format!("/users/{id}")).await.ok(StatusCode::NO_CONTENT);
    alice_session.get("/users/me").await.unauthenticated();
    alice_pat.get("/users/me").await.unauthenticated();
    assert!(m.store.list_tokens(id).await.unwrap().is_empty(), "the user's tokens are deleted with it");
    root.get(&format!("/users/{id}")).await.not_found();
    root.delete(&format!("/users/{id}")).await.not_found();
    root.patch(&format!("/users/{id}"), json!({"role": "root"})).await.not_found();
    m.stop().await;
}

#[tokio::test]
async fn passwords_and_hashes_never_appear_in_answers() {
    let (m, root) = start().await;
    let anon = root.anonymous();
    let mut answers = vec![anon.sign_in_answer("root", ROOT_PASSWORD).await];
    let secret = "a-very-secret-password";
    answers.push(root.post("/users", json!({"name": "carol", "password": secret, "role": "guest"})).await);
    let carol = answers.last().unwrap().json["id"].as_i64().unwrap();
    answers.push(anon.sign_in_answer("carol", secret).await);
    answers.push(root.get("/users").await);
    answers.push(root.get(&format!("/users/{carol}")).await);
    answers.push(root.get("/users/me").await);
    answers.push(root.patch(&format!("/users/{carol}"), json!({"password": secret, "role": "guest"})).await);
    for a in &answers {
        assert!(a.status.is_success(), "{}", a.text);
        // The sign-in token is random base64: leave it out of the search.
        let mut body = a.json.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("token");
        }
        let text = body.to_string();
        for leak in ["password", "$argon2", secret, ROOT_PASSWORD, "hash"] {
            assert!(!text.contains(leak), "{leak:?} in {}", a.text);
        }
    }
    m.stop().await;
}
