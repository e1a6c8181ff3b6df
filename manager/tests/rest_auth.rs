//! Who is calling, over the manager's REST API (`/api/v1`, see
//! docs/manager.md) on 127.0.0.1:0 with a SQLite store: sign-in tokens (good,
//! forged, expired, signed out, ended by a new password) and personal access
//! tokens. Expiry is tested on a manual clock: the tests move time, they do
//! not wait for it.

use std::time::{Duration, SystemTime};

use manager::clock::ManualClock;
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod support;
use support::ROOT_PASSWORD;
use support::rest::{Api, assert_time, create_cluster, guest, id, start, start_with, start_with_clock};

/// A JWT key for managers whose tokens the tests forge.
const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-test-key";

/// A JWT with the manager's claims, signed with HS256 (or `alg`) and `key`.
fn forge_jwt(key: &str, alg: jsonwebtoken::Algorithm, sub: i64, exp_in: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let now = i64::try_from(now).unwrap();
    let claims =
        json!({"sub": sub.to_string(), "jti": format!("forged-{now}-{alg:?}"), "iat": now, "exp": now + exp_in});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn requests_without_a_good_token_are_401_with_a_bearer_challenge() {
    let (m, root) = start_with(|c| c.auth.jwt_secret = Some(JWT_SECRET.into())).await;
    let anon = root.anonymous();

    anon.get("/clusters").await.unauthenticated();
    root.with("garbage").get("/clusters").await.unauthenticated();
    root.with("dpat_0123456789abcdef").get("/clusters").await.unauthenticated();
    let basic = anon.request(Method::GET, "/clusters").header(AUTHORIZATION, "Basic cm9vdDpyb290");
    Api::send(basic).await.unauthenticated();
    let empty = anon.request(Method::GET, "/clusters").header(AUTHORIZATION, "Bearer ");
    Api::send(empty).await.unauthenticated();

    // A well-formed token for root signed with the manager's key works; the
    // same claims under another key, or another algorithm, do not.
    let me = root.with(&forge_jwt(JWT_SECRET, jsonwebtoken::Algorithm::HS256, 1, 600)).get("/users/me").await;
    assert_eq!(me.ok(StatusCode::OK)["name"], "root");
    let other_key = "another-key-of-at-least-32-bytes-long";
    root.with(&forge_jwt(other_key, jsonwebtoken::Algorithm::HS256, 1, 600)).get("/users/me").await.unauthenticated();
    root.with(&forge_jwt(JWT_SECRET, jsonwebtoken::Algorithm::HS512, 1, 600)).get("/users/me").await.unauthenticated();
    // Expired and for a user that does not exist.
    let expired = root.with(&forge_jwt(JWT_SECRET, jsonwebtoken::Algorithm::HS256, 1, -60)).get("/users/me").await;
    assert!(expired.unauthenticated().message().contains("expired"), "{}", expired.text);
    root.with(&forge_jwt(JWT_SECRET, jsonwebtoken::Algorithm::HS256, 999, 600))
        .get("/users/me")
        .await
        .unauthenticated();

    // Wrong password and unknown user: the same answer.
    let wrong = root.sign_in_answer("root", "not-the-password").await;
    wrong.unauthenticated();
    let unknown = root.sign_in_answer("nobody", "not-the-password").await;
    unknown.unauthenticated();
    assert_eq!(wrong.json, unknown.json);
    assert!(wrong.json.get("token").is_none());

    // The real sign-in token works; the scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let rb = anon.request(Method::GET, "/users/me").header(AUTHORIZATION, format!("{scheme} {}", root.token()));
        assert_eq!(Api::send(rb).await.ok(StatusCode::OK)["name"], "root", "{scheme}");
    }
    m.stop().await;
}

#[tokio::test]
async fn sign_in_tokens_expire_after_the_configured_ttl() {
    let manual = ManualClock::new();
    let clock = manual.clock();
    let (m, _) = start_with_clock(clock.clone(), |c| c.auth.token_ttl = Duration::from_secs(1)).await;
    let before = clock.now();
    let answer = Api::new(&m).sign_in_answer("root", ROOT_PASSWORD).await.ok(StatusCode::OK);
    assert_time(&answer["expires_at"]);
    let expires_at = humantime::parse_rfc3339(answer["expires_at"].as_str().unwrap()).unwrap();
    // One TTL after sign-in, truncated to whole seconds.
    let window = before..=clock.now() + Duration::from_secs(1);
    assert!(window.contains(&expires_at), "{} not in {window:?}", answer["expires_at"]);
    let root = Api::new(&m).with(answer["token"].as_str().unwrap());
    root.get("/users/me").await.ok(StatusCode::OK);

    // `exp` is in whole seconds and checked against whole seconds: the token
    // is good to the last moment of the second `expires_at`...
    let move_to = |t: SystemTime| manual.advance(t.duration_since(clock.now()).expect("time moves forward"));
    move_to(expires_at + Duration::from_millis(999));
    root.get("/users/me").await.ok(StatusCode::OK);
    // ...and refused from the second after on.
    move_to(expires_at + Duration::from_secs(1));
    let late = root.get("/users/me").await;
    assert!(late.unauthenticated().message().contains("expired"), "{}", late.text);
    m.stop().await;
}

#[tokio::test]
async fn signing_out_revokes_only_that_token() {
    let (m, root) = start().await;
    let other = root.sign_in("root", ROOT_PASSWORD).await;
    assert_ne!(other.token(), root.token());

    assert_eq!(root.post("/users/signout", json!({})).await.ok(StatusCode::NO_CONTENT), Value::Null);
    let after = root.get("/clusters").await;
    assert!(after.unauthenticated().message().contains("signed out"), "{}", after.text);
    root.post("/users/signout", json!({})).await.unauthenticated();
    // Another session of the same user, and a fresh sign-in, still work.
    other.get("/clusters").await.ok(StatusCode::OK);
    root.sign_in("root", ROOT_PASSWORD).await.get("/users/me").await.ok(StatusCode::OK);
    m.stop().await;
}

#[tokio::test]
async fn a_new_password_ends_sign_in_sessions_but_not_access_tokens() {
    let clock = ManualClock::new();
    let (m, root) = start_with_clock(clock.clock(), |_| {}).await;
    let (guest_id, guest) = guest(&root).await;
    let pat = guest.post("/personal-access-tokens", json!({"name": "ci"})).await;
    let pat = guest.with(pat.json["token"].as_str().unwrap());
    let other_session = root.sign_in("guest", "guest-password").await;
    // Sessions are cut at whole seconds: make the change a second later.
    clock.advance(Duration::from_secs(1));
    let path = format!("/users/{guest_id}/password");
    let ok = guest.put(&path, json!({"old_password": "guest-password", "new_password": "new-guest-password"})).await;
    ok.ok(StatusCode::NO_CONTENT);
    for session in [&guest, &other_session] {
        let refused = session.get("/users/me").await;
        assert!(refused.text.contains("password changed"), "{}", refused.text);
        refused.unauthenticated();
    }
    pat.get("/users/me").await.ok(StatusCode::OK);
    let fresh = root.sign_in("guest", "new-guest-password").await;
    fresh.get("/users/me").await.ok(StatusCode::OK);
    m.stop().await;
}

#[tokio::test]
async fn personal_access_tokens_work_until_expired_or_deleted() {
    let clock = ManualClock::new();
    let (m, root) = start_with_clock(clock.clock(), |_| {}).await;

    let created = root.post("/personal-access-tokens", json!({"name": "ci"})).await.ok(StatusCode::CREATED);
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("dpat_") && secret.len() > 40, "{secret}");
    assert_eq!((created["name"].as_str(), created["user_id"].as_i64()), (Some("ci"), Some(1)));
    assert_eq!(created["expires_at"], Value::Null);
    assert_time(&created["created_at"]);
    let pat = root.with(&secret);
    assert_eq!(pat.get("/users/me").await.ok(StatusCode::OK)["name"], "root");
    // The token carries root's role.
    create_cluster(&pat, json!({"name": "made-with-a-pat"})).await;

    // The secret is shown only once.
    let list = root.get("/personal-access-tokens").await;
    assert!(!list.text.contains(&secret[5..]), "{}", list.text);
    let list = list.ok(StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], created["id"]);
    assert!(list[0].get("token").is_none(), "{list}");

    // Signing out with a PAT does not revoke it.
    pat.post("/users/signout", json!({})).await.ok(StatusCode::NO_CONTENT);
    pat.get("/users/me").await.ok(StatusCode::OK);

    // Expiring.
    let short = root.post("/personal-access-tokens", json!({"name": "short", "expires_in": "1s"})).await;
    let short = short.ok(StatusCode::CREATED);
    assert_time(&short["expires_at"]);
    let short_pat = root.with(short["token"].as_str().unwrap());
    short_pat.get("/users/me").await.ok(StatusCode::OK);
    // Good to the last millisecond of its second, refused from then on.
    clock.advance(Duration::from_millis(999));
    short_pat.get("/users/me").await.ok(StatusCode::OK);
    clock.advance(Duration::from_millis(1));
    let late = short_pat.get("/users/me").await;
    assert!(late.unauthenticated().message().contains("expired"), "{}", late.text);

    // Another user cannot see or delete root's token: 404, and it still works.
    let (_, guest) = guest(&root).await;
    let theirs = guest.get("/personal-access-tokens").await.ok(StatusCode::OK);
    assert_eq!(theirs, json!([]));
    guest.delete(&format!("/personal-access-tokens/{}", id(&created))).await.not_found();
    pat.get("/users/me").await.ok(StatusCode::OK);

    // Deleted: refused at once; deleting again is a 404.
    root.delete(&format!("/personal-access-tokens/{}", id(&created))).await.ok(StatusCode::NO_CONTENT);
    pat.get("/users/me").await.unauthenticated();
    root.delete(&format!("/personal-access-tokens/{}", id(&created))).await.not_found();
    root.delete("/personal-access-tokens/999").await.not_found();
    let left = root.get("/personal-access-tokens").await.ok(StatusCode::OK);
    assert_eq!(left.as_array().unwrap().iter().map(id).collect::<Vec<_>>(), vec![id(&short)]);

    // Bad requests name the field.
    for bad in ["soon", "0s", "-1d", "20y", ""] {
        let a = root.post("/personal-access-tokens", json!({"name": "x", "expires_in": bad})).await;
        a.invalid("expires_in");
    }
    root.post("/personal-access-tokens", json!({"name": " "})).await.invalid("name");
    root.post("/personal-access-tokens", json!({"name": "x", "expires": "1d"})).await.invalid("expires");
    assert_eq!(root.get("/personal-access-tokens").await.ok(StatusCode::OK).as_array().unwrap().len(), 1);
    m.stop().await;
}
