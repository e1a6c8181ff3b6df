//! The manager's REST API (`/api/v1`, see docs/manager.md) over a real server
//! on 127.0.0.1:0 with a SQLite store: authentication, roles, validation,
//! clusters, members, `/match` and the OpenAPI document.

use std::time::{Duration, Instant, SystemTime};

use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_client::ManagerClient;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

mod support;
use support::{DEADLINE, ROOT_PASSWORD, TestManager};

/// A JWT key for managers whose tokens the tests forge.
const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-test-key";

// ---------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------

/// One HTTP answer: status, headers and the body as JSON (`Null` when empty).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
    text: String,
}

impl Answer {
    /// The body, after checking the status.
    #[track_caller]
    fn ok(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self.json
    }

    /// Checks an error answer: status, `error.code` and, if given, `error.field`.
    #[track_caller]
    fn err(&self, status: StatusCode, code: &str, field: Option<&str>) -> &Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        let e = &self.json["error"];
        assert_eq!(e["code"], code, "unexpected error: {}", self.text);
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {}", self.text);
        match field {
            Some(f) => assert_eq!(e["field"], f, "unexpected field: {}", self.text),
            None => assert!(e.get("field").is_none(), "unexpected field: {}", self.text),
        }
        self
    }

    /// A 401 with the `WWW-Authenticate: Bearer` challenge.
    #[track_caller]
    fn unauthenticated(&self) -> &Self {
        self.err(StatusCode::UNAUTHORIZED, "unauthenticated", None);
        assert_eq!(self.headers.get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap()), Some("Bearer"), "{self:?}");
        self
    }

    /// A 403 for a guest writing.
    #[track_caller]
    fn forbidden(&self) -> &Self {
        self.err(StatusCode::FORBIDDEN, "permission_denied", None)
    }

    /// A 404 `not_found`.
    #[track_caller]
    fn not_found(&self) -> &Self {
        self.err(StatusCode::NOT_FOUND, "not_found", None)
    }

    /// A 400 naming `field`.
    #[track_caller]
    fn invalid(&self, field: &str) -> &Self {
        self.err(StatusCode::BAD_REQUEST, "invalid_argument", Some(field))
    }

    fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or_default()
    }
}

/// A REST client for one manager, with or without a bearer token.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(m: &TestManager) -> Self {
        darter_common::install_crypto_provider();
        let http = reqwest::Client::builder().no_proxy().timeout(DEADLINE).build().unwrap();
        Self { http, base: m.url(""), token: None }
    }

    /// The same client presenting `token`.
    fn with(&self, token: &str) -> Self {
        Self { token: Some(token.to_owned()), ..self.clone() }
    }

    /// The same client without a token.
    fn anonymous(&self) -> Self {
        Self { token: None, ..self.clone() }
    }

    /// A request to `/api/v1` + `path` with the token, if any.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        }
    }

    /// Sends a request built by hand.
    async fn send(rb: reqwest::RequestBuilder) -> Answer {
        let resp = rb.send().await.expect("the manager answers");
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
        };
        Answer { status, headers, json, text }
    }

    /// `method path` with an optional JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut rb = self.request(method, path);
        if let Some(body) = body {
            rb = rb.header(CONTENT_TYPE, "application/json").body(serde_json::to_vec(body).unwrap());
        }
        Self::send(rb).await
    }

    /// `method path` with a raw body and content type.
    async fn raw(&self, method: Method, path: &str, content_type: Option<&str>, body: &str) -> Answer {
        let mut rb = self.request(method, path).body(body.to_owned());
        if let Some(ct) = content_type {
            rb = rb.header(CONTENT_TYPE, ct);
        }
        Self::send(rb).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(&body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(&body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(&body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// Signs in; the whole answer.
    async fn sign_in_answer(&self, name: &str, password: &str) -> Answer {
        self.anonymous().post("/users/signin", json!({"name": name, "password": password})).await
    }

    /// Signs in; a client presenting the token.
    async fn sign_in(&self, name: &str, password: &str) -> Api {
        let body = self.sign_in_answer(name, password).await.ok(StatusCode::OK);
        self.with(body["token"].as_str().expect("a token"))
    }

    /// The token this client presents.
    fn token(&self) -> &str {
        self.token.as_deref().unwrap()
    }
}

/// A manager and a client signed in as root.
async fn start_with(tweak: impl FnOnce(&mut manager::Config)) -> (TestManager, Api) {
    let m = TestManager::start_with(|c| {
        // Long enough that only invalidation can refresh a cached answer.
        c.cache.ttl = Duration::from_secs(3600);
        tweak(c);
    })
    .await;
    let root = Api::new(&m).sign_in("root", ROOT_PASSWORD).await;
    (m, root)
}

async fn start() -> (TestManager, Api) {
    start_with(|_| {}).await
}

/// Root creates a user; its ID.
async fn create_user(root: &Api, name: &str, password: &str, role: &str) -> i64 {
    let u =
        root.post("/users", json!({"name": name, "password": password, "role": role})).await.ok(StatusCode::CREATED);
    assert_eq!((u["name"].as_str(), u["role"].as_str()), (Some(name), Some(role)), "{u}");
    u["id"].as_i64().unwrap()
}

/// Root creates a guest and signs it in.
async fn guest(root: &Api) -> (i64, Api) {
    let id = create_user(root, "guest", "guest-password", "guest").await;
    (id, root.sign_in("guest", "guest-password").await)
}

/// Root creates a cluster; the answer.
async fn create_cluster(root: &Api, body: Value) -> Value {
    root.post("/clusters", body).await.ok(StatusCode::CREATED)
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// The clusters list, as root sees it.
async fn clusters(root: &Api) -> Value {
    root.get("/clusters").await.ok(StatusCode::OK)
}

/// Checks an RFC 3339 UTC time with whole seconds (`2026-11-22T06:00:00Z`).
#[track_caller]
fn assert_time(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.len() == 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T', "not RFC 3339 UTC: {s}");
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
}

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

// ---------------------------------------------------------------------------
// gRPC helpers: schedulers that make a cluster eligible for /match
// ---------------------------------------------------------------------------

/// A registered scheduler (or seed peer) with its keepalive stream held open.
struct Scheduler {
    member: pb::Member,
    tx: mpsc::Sender<pb::KeepAliveRequest>,
    call: tokio::task::JoinHandle<Result<(), tonic::Status>>,
}

impl Scheduler {
    fn id(&self) -> i64 {
        i64::try_from(self.member.id).unwrap()
    }

    /// Closes the keepalive stream; the member is inactive once this returns.
    async fn close(self) {
        drop(self.tx);
        tokio::time::timeout(DEADLINE, self.call).await.expect("keepalive call ends").unwrap().unwrap();
    }
}

fn keepalive(m: &pb::Member) -> pb::KeepAliveRequest {
    pb::KeepAliveRequest { kind: m.kind, member_id: m.id, hostname: m.hostname.clone(), ip: m.ip.clone() }
}

/// Registers a scheduler in `cluster_id` (0: the default) and keeps it alive.
async fn scheduler(client: &ManagerClient<Channel>, hostname: &str, ip: &str, cluster_id: i64) -> Scheduler {
    let req = pb::RegisterSchedulerRequest {
        hostname: hostname.into(),
        ip: ip.into(),
        port: 8002,
        cluster_id: u64::try_from(cluster_id).unwrap(),
        version: "test".into(),
        ..Default::default()
    };
    let member = client.clone().register_scheduler(req).await.unwrap().into_inner();
    hold(client, member).await
}

/// Registers a seed peer in `cluster_id` (0: the default) and keeps it alive.
async fn seed_peer(client: &ManagerClient<Channel>, hostname: &str, ip: &str, cluster_id: i64) -> Scheduler {
    let host = darter_proto::common::v1::Host {
        hostname: hostname.into(),
        ip: ip.into(),
        port: 4000,
        download_port: 4001,
        ..Default::default()
    };
    let req = pb::RegisterSeedPeerRequest { host: Some(host), cluster_id: u64::try_from(cluster_id).unwrap() };
    let member = client.clone().register_seed_peer(req).await.unwrap().into_inner();
    hold(client, member).await
}

/// Opens `member`'s keepalive stream and holds it open.
async fn hold(client: &ManagerClient<Channel>, member: pb::Member) -> Scheduler {
    let (tx, rx) = mpsc::channel(4);
    tx.send(keepalive(&member)).await.unwrap();
    let mut c = client.clone();
    let call = tokio::spawn(async move { c.keep_alive(ReceiverStream::new(rx)).await.map(|r| r.into_inner()) });
    Scheduler { member, tx, call }
}

fn peer(ip: &str) -> pb::ListSchedulersRequest {
    pb::ListSchedulersRequest { hostname: "peer".into(), ip: ip.into(), ..Default::default() }
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

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
    let (m, _) = start_with(|c| c.auth.token_ttl = Duration::from_secs(1)).await;
    let before = SystemTime::now();
    let answer = Api::new(&m).sign_in_answer("root", ROOT_PASSWORD).await.ok(StatusCode::OK);
    assert_time(&answer["expires_at"]);
    let expires_at = humantime::parse_rfc3339(answer["expires_at"].as_str().unwrap()).unwrap();
    // One TTL after sign-in, truncated to whole seconds.
    let window = before..=SystemTime::now() + Duration::from_secs(1);
    assert!(window.contains(&expires_at), "{} not in {window:?}", answer["expires_at"]);
    let root = Api::new(&m).with(answer["token"].as_str().unwrap());
    root.get("/users/me").await.ok(StatusCode::OK);

    // `exp` is in whole seconds and checked against whole seconds: the token
    // is refused from the second after `expires_at` on.
    let dead = expires_at + Duration::from_millis(1020);
    tokio::time::sleep(dead.duration_since(SystemTime::now()).unwrap_or_default()).await;
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
async fn personal_access_tokens_work_until_expired_or_deleted() {
    let (m, root) = start().await;

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
    let made = Instant::now();
    short_pat.get("/users/me").await.ok(StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(made.elapsed())).await;
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

// ---------------------------------------------------------------------------
// Roles and users
// ---------------------------------------------------------------------------

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
async fn a_new_password_ends_sign_in_sessions_but_not_access_tokens() {
    let (m, root) = start().await;
    let (guest_id, guest) = guest(&root).await;
    let pat = guest.post("/personal-access-tokens", json!({"name": "ci"})).await;
    let pat = guest.with(pat.json["token"].as_str().unwrap());
    let other_session = root.sign_in("guest", "guest-password").await;
    // Sessions are cut at whole seconds: make the change a second later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
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

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

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
        (
            Method::POST,
            "/clusters",
            json,
            format!(r#"{{"name": "west", "description": "{}"}}"#, "x".repeat(70_000)),
            "body",
        ),
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
    Api::send(root.http.get(outside)).await.not_found();

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

// ---------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// /match and the ListSchedulers cache
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let (m, root) = start().await;
    let doc = root.anonymous().get("/openapi.json").await;
    assert!(
        doc.headers.get(CONTENT_TYPE).is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "{:?}",
        doc.headers
    );
    let doc = doc.ok(StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);

    // Every route of docs/manager.md.
    let routes = [
        ("post", "/users/signin"),
        ("post", "/users/signout"),
        ("get", "/users/me"),
        ("get", "/users"),
        ("post", "/users"),
        ("get", "/users/{id}"),
        ("patch", "/users/{id}"),
        ("delete", "/users/{id}"),
        ("put", "/users/{id}/password"),
        ("get", "/roles"),
        ("get", "/personal-access-tokens"),
        ("post", "/personal-access-tokens"),
        ("delete", "/personal-access-tokens/{id}"),
        ("get", "/clusters"),
        ("post", "/clusters"),
        ("get", "/clusters/{id}"),
        ("put", "/clusters/{id}"),
        ("patch", "/clusters/{id}"),
        ("delete", "/clusters/{id}"),
        ("get", "/clusters/{id}/scopes"),
        ("put", "/clusters/{id}/scopes"),
        ("get", "/clusters/{id}/config"),
        ("put", "/clusters/{id}/config"),
        ("get", "/schedulers"),
        ("get", "/schedulers/{id}"),
        ("delete", "/schedulers/{id}"),
        ("get", "/seed-peers"),
        ("get", "/seed-peers/{id}"),
        ("delete", "/seed-peers/{id}"),
        ("get", "/match"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in routes {
        let full = format!("/api/v1{path}");
        let op = paths.get(&full).and_then(|p| p.get(method));
        assert!(op.is_some(), "{method} {full} missing; documented: {:?}", paths.keys().collect::<Vec<_>>());
        // Everything but sign-in asks for the bearer token.
        let secured = op.unwrap()["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        assert_eq!(secured, path != "/users/signin", "{method} {full} security");
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")), "{scheme}");
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());

    // And it is served for real: a documented route answers.
    root.get("/roles").await.ok(StatusCode::OK);
    m.stop().await;
}
