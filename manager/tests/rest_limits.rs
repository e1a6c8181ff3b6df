//! Issue 14, attack 9 (the manager's part: cheap denial of service on REST),
//! against the real `manager` binary: the REST server had no header-read
//! timeout, no connection cap, and no request timeout, so a few idle or slow
//! connections held it. Each test sets a limit of `rest:` small and shows a
//! client past it cut off while the API goes on answering others:
//!
//! - a half-sent request head (slowloris) is closed after
//!   `rest.header_read_timeout`;
//! - a body that never finishes is answered `503 timeout` after
//!   `rest.request_timeout`;
//! - a connection beyond `rest.max_connections`, or beyond
//!   `rest.max_connections_per_address` from one address, is closed at once,
//!   and the API answers again once the others go;
//! - a body over `rest.max_body_size` is a `413 too_large`, sent with its
//!   length or chunked, and a head over `rest.max_header_size` a `431`;
//! - every answer carries the security headers, and the console its strict
//!   content-security policy.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::rest::Api;
use testkit::eventually::{DEADLINE, patience, poll};
use testkit::manager::ManagerProcess;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

const ROOT_PASSWORD: &str = "limits-root-password";
/// Another client address on loopback.
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, ManagerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<_> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let m =
        ManagerProcess::start(env!("CARGO_BIN_EXE_manager").as_ref(), dir.path(), &env, ROOT_PASSWORD).await.unwrap();
    (dir, m)
}

/// A TCP connection to `addr` from `local`.
async fn connect_from(addr: SocketAddr, local: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes `conn` (end of stream or reset), for at
/// most `within`; what it sent, or `None` if it was still open.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| String::from_utf8_lossy(&seen).into_owned())
}

/// A plain HTTP client, each request bounded by `timeout`.
fn http(timeout: Duration) -> reqwest::Client {
    darter_common::install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(timeout).build().unwrap()
}

/// Whether the API answers a plain request (from 127.0.0.1).
async fn api_answers(m: &ManagerProcess) -> bool {
    let http = http(Duration::from_secs(2));
    let url = format!("http://{}/api/v1/openapi.json", m.rest_addr);
    matches!(http.get(url).send().await, Ok(r) if r.status() == StatusCode::OK)
}

#[tokio::test]
async fn a_half_sent_request_head_is_cut_after_the_header_read_timeout() {
    let timeout = Duration::from_secs(1);
    let (_dir, m) = start(&[("MANAGER__REST__HEADER_READ_TIMEOUT", "1s")]).await;
    let mut slow = TcpStream::connect(m.rest_addr).await.unwrap();
    let start = Instant::now();
    slow.write_all(b"GET /api/v1/clusters HTTP/1.1\r\nHost: manager\r\nX-Slow: ").await.unwrap();
    // Meanwhile the API answers everyone else.
    assert!(api_answers(&m).await);
    let closed = closed_within(&mut slow, patience(timeout + Duration::from_secs(2))).await;
    let took = start.elapsed();
    assert!(closed.is_some(), "the slow connection was still open after {took:?}");
    assert!(took >= timeout - Duration::from_millis(100), "closed after {took:?}, before the timeout");
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(m.rest_addr).await.unwrap();
    idle.write_all(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: manager\r\n\r\n").await.unwrap();
    let answered = closed_within(&mut idle, patience(timeout + Duration::from_secs(2))).await;
    assert!(answered.is_some_and(|a| a.starts_with("HTTP/1.1 200")), "answered, then closed when idle");
}

#[tokio::test]
async fn a_body_that_never_ends_is_answered_503_after_the_request_timeout() {
    let (_dir, m) = start(&[("MANAGER__REST__REQUEST_TIMEOUT", "1s")]).await;
    let mut slow = TcpStream::connect(m.rest_addr).await.unwrap();
    let head = "POST /api/v1/users/signin HTTP/1.1\r\nHost: manager\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"name\": ";
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = closed_within(&mut slow, patience(Duration::from_secs(5))).await;
    let answer = answer.unwrap_or_else(|| "(still waiting)".into());
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#) && answer.contains("rest.request_timeout"), "{answer}");
    assert!(api_answers(&m).await);
}

#[tokio::test]
async fn connections_beyond_the_caps_are_closed_and_the_api_answers_once_they_go() {
    let (_dir, m) =
        start(&[("MANAGER__REST__MAX_CONNECTIONS", "4"), ("MANAGER__REST__MAX_CONNECTIONS_PER_ADDRESS", "3")]).await;
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // One address holds all it may: the next connection from it is closed...
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(m.rest_addr, local).await);
    }
    let mut extra = connect_from(m.rest_addr, local).await;
    assert!(closed_within(&mut extra, patience(DEADLINE)).await.is_some(), "a 4th connection from one address");
    // ...while another address still gets the last one under the global cap
    // (and is served on it)...
    let mut last = connect_from(m.rest_addr, OTHER_CLIENT).await;
    last.write_all(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: manager\r\n\r\n").await.unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(patience(DEADLINE), last.read(&mut head)).await.unwrap().unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    held.push(last);
    // ...and then nobody does.
    let mut beyond = connect_from(m.rest_addr, OTHER_CLIENT).await;
    assert!(closed_within(&mut beyond, patience(DEADLINE)).await.is_some(), "a 5th connection in all");
    assert!(!api_answers(&m).await, "the cap is full");

    drop(held);
    poll("the API to answer once the connections are gone", DEADLINE, || async { api_answers(&m).await.then_some(()) })
        .await
        .unwrap();
    let metrics = http(patience(DEADLINE)).get(format!("http://{}/metrics", m.metrics_addr)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    for limit in ["max_connections", "max_connections_per_address"] {
        let line = format!("manager_rest_limited_total{{limit=\"{limit}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_its_length_and_a_big_head_431() {
    let (_dir, m) = start(&[("MANAGER__REST__MAX_BODY_SIZE", "1KiB")]).await;
    let anon = Api::at(m.rest_addr);
    let big = serde_json::json!({"name": "root", "password": "x".repeat(2000)}).to_string();
    let a = anon.raw(reqwest::Method::POST, "/users/signin", Some("application/json"), &big).await;
    a.err(StatusCode::PAYLOAD_TOO_LARGE, "too_large", None);
    assert!(a.message().contains("1024 bytes"), "{}", a.text);

    // Chunked, so only reading tells.
    let mut conn = TcpStream::connect(m.rest_addr).await.unwrap();
    let mut request = b"POST /api/v1/users/signin HTTP/1.1\r\nHost: manager\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for chunk in big.as_bytes().chunks(500) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&request).await.unwrap();
    let answer = closed_within(&mut conn, patience(DEADLINE)).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("too_large"), "{answer}");

    // Under the limit, as before.
    anon.sign_in("root", ROOT_PASSWORD).await;

    // A head over rest.max_header_size (16 KiB) is a 431.
    let mut conn = TcpStream::connect(m.rest_addr).await.unwrap();
    let head = format!("GET /api/v1/openapi.json HTTP/1.1\r\nHost: manager\r\nX-Big: {}\r\n\r\n", "x".repeat(20_000));
    conn.write_all(head.as_bytes()).await.unwrap();
    let answer = closed_within(&mut conn, patience(DEADLINE)).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn answers_carry_the_security_headers_and_the_console_a_strict_policy() {
    let (_dir, m) = start(&[]).await;
    let http = http(patience(DEADLINE));
    let get = |path: &str| http.get(format!("http://{}{path}", m.rest_addr)).send();
    for path in ["/console/", "/console/app.js", "/console/style.css"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        check_common_headers(path, r.headers());
    }
    // The page itself has no inline script for the policy to refuse.
    let page = get("/console/").await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains(" onclick="), "inline script in the console page");
    for path in ["/api/v1/openapi.json", "/api/v1/clusters", "/nope"] {
        let r = get(path).await.unwrap();
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{path}");
        check_common_headers(path, r.headers());
        if path == "/nope" {
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "not_found");
        }
    }
}

#[track_caller]
fn check_common_headers(path: &str, headers: &reqwest::header::HeaderMap) {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(get("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
    assert_eq!(get("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
    assert_eq!(get("x-frame-options").as_deref(), Some("DENY"), "{path}");
}
