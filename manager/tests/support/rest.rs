//! The one REST client of the manager's tests: [`Api`] sends a request to
//! `/api/v1` (with or without a bearer token) and [`Answer`] checks what came
//! back (`.ok(status)`, `.invalid(field)`, `.unauthenticated()`, ...). Also
//! the setup most REST tests share: a manager with root signed in, users,
//! clusters.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ROOT_PASSWORD, TestManager};
use manager::clock::Clock;

/// One HTTP answer: status, headers and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Answer {
    /// The body, after checking the status.
    #[track_caller]
    pub fn ok(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self.json
    }

    /// Checks an error answer: status, `error.code` and, if given, `error.field`.
    #[track_caller]
    pub fn err(&self, status: StatusCode, code: &str, field: Option<&str>) -> &Self {
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
    pub fn unauthenticated(&self) -> &Self {
        self.err(StatusCode::UNAUTHORIZED, "unauthenticated", None);
        assert_eq!(self.headers.get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap()), Some("Bearer"), "{self:?}");
        self
    }

    /// A 403 for a guest writing.
    #[track_caller]
    pub fn forbidden(&self) -> &Self {
        self.err(StatusCode::FORBIDDEN, "permission_denied", None)
    }

    /// A 404 `not_found`.
    #[track_caller]
    pub fn not_found(&self) -> &Self {
        self.err(StatusCode::NOT_FOUND, "not_found", None)
    }

    /// A 400 naming `field`.
    #[track_caller]
    pub fn invalid(&self, field: &str) -> &Self {
        self.err(StatusCode::BAD_REQUEST, "invalid_argument", Some(field))
    }

    /// The error message (empty when there is none).
    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or_default()
    }
}

/// A REST client for one manager, with or without a bearer token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client for `m`, without a token.
    pub fn new(m: &TestManager) -> Self {
        Self::at(m.rest)
    }

    /// A client for the manager whose REST API listens on `rest`, without a token.
    pub fn at(rest: SocketAddr) -> Self {
        darter_common::install_crypto_provider();
        let timeout = testkit::eventually::patience(testkit::eventually::DEADLINE);
        let http = reqwest::Client::builder().no_proxy().timeout(timeout).build().unwrap();
        Self { http, base: format!("http://{rest}/api/v1"), token: None }
    }

    /// Like [`Api::at`], connecting from `local` (another loopback address,
    /// 127.0.0.2, is another client address to the manager).
    pub fn at_from(rest: SocketAddr, local: std::net::IpAddr) -> Self {
        darter_common::install_crypto_provider();
        let timeout = testkit::eventually::patience(testkit::eventually::DEADLINE);
        let http = reqwest::Client::builder().no_proxy().timeout(timeout).local_address(local).build().unwrap();
        Self { http, base: format!("http://{rest}/api/v1"), token: None }
    }

    /// The same client presenting `token`.
    pub fn with(&self, token: &str) -> Self {
        Self { token: Some(token.to_owned()), ..self.clone() }
    }

    /// The same client without a token.
    pub fn anonymous(&self) -> Self {
        Self { token: None, ..self.clone() }
    }

    /// The underlying HTTP client, for a request outside `/api/v1`.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to `/api/v1` + `path` with the token, if any.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        }
    }

    /// Sends a request built by hand.
    pub async fn send(rb: reqwest::RequestBuilder) -> Answer {
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
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut rb = self.request(method, path);
        if let Some(body) = body {
            rb = rb.header(CONTENT_TYPE, "application/json").body(serde_json::to_vec(body).unwrap());
        }
        Self::send(rb).await
    }

    /// `method path` with a raw body and content type.
    pub async fn raw(&self, method: Method, path: &str, content_type: Option<&str>, body: &str) -> Answer {
        let mut rb = self.request(method, path).body(body.to_owned());
        if let Some(ct) = content_type {
            rb = rb.header(CONTENT_TYPE, ct);
        }
        Self::send(rb).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// Signs in; the whole answer.
    pub async fn sign_in_answer(&self, name: &str, password: &str) -> Answer {
        self.anonymous().post("/users/signin", json!({"name": name, "password": password})).await
    }

    /// Signs in; a client presenting the token.
    pub async fn sign_in(&self, name: &str, password: &str) -> Api {
        let body = self.sign_in_answer(name, password).await.ok(StatusCode::OK);
        self.with(body["token"].as_str().expect("a token"))
    }

    /// The token this client presents.
    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap()
    }
}

/// A manager reading `clock`, and a client signed in as root.
pub async fn start_with_clock(clock: Clock, tweak: impl FnOnce(&mut manager::Config)) -> (TestManager, Api) {
    let m = TestManager::start_with_clock(clock, |c| {
        // Long enough that only invalidation can refresh a cached answer.
        c.cache.ttl = Duration::from_secs(3600);
        tweak(c);
    })
    .await;
    let root = Api::new(&m).sign_in("root", ROOT_PASSWORD).await;
    (m, root)
}

/// A manager and a client signed in as root.
pub async fn start_with(tweak: impl FnOnce(&mut manager::Config)) -> (TestManager, Api) {
    start_with_clock(Clock::system(), tweak).await
}

pub async fn start() -> (TestManager, Api) {
    start_with(|_| {}).await
}

/// Root creates a user; its ID.
pub async fn create_user(root: &Api, name: &str, password: &str, role: &str) -> i64 {
    let u =
        root.post("/users", json!({"name": name, "password": password, "role": role})).await.ok(StatusCode::CREATED);
    assert_eq!((u["name"].as_str(), u["role"].as_str()), (Some(name), Some(role)), "{u}");
    u["id"].as_i64().unwrap()
}

/// Root creates a guest and signs it in.
pub async fn guest(root: &Api) -> (i64, Api) {
    let id = create_user(root, "guest", "guest-password", "guest").await;
    (id, root.sign_in("guest", "guest-password").await)
}

/// Root creates a cluster; the answer.
pub async fn create_cluster(root: &Api, body: Value) -> Value {
    root.post("/clusters", body).await.ok(StatusCode::CREATED)
}

pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// The clusters list, as root sees it.
pub async fn clusters(root: &Api) -> Value {
    root.get("/clusters").await.ok(StatusCode::OK)
}

/// Checks an RFC 3339 UTC time with whole seconds (`2026-11-22T06:00:00Z`).
#[track_caller]
pub fn assert_time(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.len() == 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T', "not RFC 3339 UTC: {s}");
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
}
