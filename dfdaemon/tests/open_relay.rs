//! Issue 14, attack 3: the proxy of a real dfdaemon is not an open relay.
//! With the defaults it refuses loopback (and every other internal)
//! destination however it is named, `CONNECT`s only to port 443, refuses a
//! path with dot segments before routing it, and cuts a relay or a tunnel on
//! which nothing moves for `proxy.idle_timeout`. An allow-list entry opens
//! exactly what it names. Each test failed against the proxy before the fix:
//! it answered 200 from loopback, tunnelled to any port, resolved `..` after
//! checking the path, and waited on a silent upstream forever.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::Daemon;
use testkit::data::{random_bytes, sha256_hex};
use testkit::eventually::{DEADLINE, patience};
use testkit::origin::{Behavior, Content, Origin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const ALLOWED: &str = "DFDAEMON__PROXY__ALLOWED_DESTINATIONS";
const CONNECT_PORTS: &str = "DFDAEMON__PROXY__CONNECT_PORTS";
const INSECURE: &str = "DFDAEMON__PROXY__INSECURE_REGISTRIES";

/// What a metadata endpoint on loopback would hand out.
const SECRET_PATH: &str = "/latest/meta-data/iam/security-credentials/node";
const SECRET: &[u8] = b"AKIA-loopback-only-secret";

fn http() -> reqwest::Client {
    darter_common::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn through(d: &Daemon) -> reqwest::Client {
    darter_common::install_crypto_provider();
    let proxy = reqwest::Proxy::http(format!("http://127.0.0.1:{}", d.proxy_port.unwrap())).unwrap();
    reqwest::Client::builder().proxy(proxy).build().unwrap()
}

/// An origin on loopback holding the secret and a blob; returns the blob's path.
async fn loopback_origin() -> (Origin, String) {
    let origin = Origin::start().await;
    origin.add(SECRET_PATH, Content::Bytes(Bytes::from_static(SECRET)), Behavior::default());
    let data = random_bytes(100_000, 14);
    let blob = format!("/v2/test/blobs/sha256:{}", sha256_hex(&data));
    origin.add(&blob, Content::Bytes(data), Behavior::default());
    (origin, blob)
}

/// Sends `request` as it is (no client normalises its path) and reads the
/// whole answer: `(status, body)`. The request must say `Connection: close`.
async fn raw(port: u16, request: String) -> (u16, String) {
    let exchange = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(patience(DEADLINE), exchange).await.expect("the proxy answered");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// Sends `CONNECT target` and reads the answer: the connection (a tunnel if
/// the head says 200), the head, and the body of a refusal.
async fn connect(port: u16, target: &str) -> (TcpStream, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
    let answer = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).await.unwrap();
        (head, String::from_utf8_lossy(&body).into_owned())
    };
    let (head, body) = tokio::time::timeout(patience(DEADLINE), answer).await.expect("the proxy answered the CONNECT");
    (s, head, body)
}

fn tasks_stored(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data/tasks")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn loopback_is_refused_by_default_on_every_route_and_reached_once_allow_listed() {
    let (origin, blob) = loopback_origin().await;
    let port = origin.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let insecure = format!("[\"127.0.0.1:{port}\"]");
    let d = Daemon::start_with_proxy(dir.path(), &[(INSECURE, insecure.as_str())]).await;
    let proxy = d.proxy_port.unwrap();

    // Forward proxy: the metadata-like endpoint stays unreachable.
    let resp = through(&d).get(origin.url(SECRET_PATH)).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("DESTINATION_DENIED")
            && body.contains(&format!("127.0.0.1:{port} is a loopback address"))
            && body.contains("proxy.allowed_destinations"),
        "{body}"
    );
    // Mirror: relayed paths and blobs (which would go through P2P) alike.
    for path in ["/v2/test/manifests/latest", blob.as_str()] {
        let resp = http().get(format!("http://127.0.0.1:{proxy}{path}?ns=127.0.0.1:{port}")).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        let json: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(json["errors"][0]["code"], "DESTINATION_DENIED", "{path}: {json}");
    }
    // CONNECT to it on the one open port (443 is not served there: the refusal comes first).
    let (_, head, _) = connect(proxy, "127.0.0.1:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(origin.stats(SECRET_PATH).requests + origin.stats(&blob).requests, 0, "the origin saw nothing");
    assert_eq!(tasks_stored(dir.path()), 0, "no download started");

    // Allow-listed as a range, the same origin is reached.
    let dir2 = tempfile::tempdir().unwrap();
    let d2 =
        Daemon::start_with_proxy(dir2.path(), &[(INSECURE, insecure.as_str()), (ALLOWED, "[\"127.0.0.0/8\"]")]).await;
    let resp = through(&d2).get(origin.url(SECRET_PATH)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), SECRET);
    let url = format!("http://127.0.0.1:{}{blob}?ns=127.0.0.1:{port}", d2.proxy_port.unwrap());
    let resp = http().get(url).send().await.unwrap();
    assert_eq!(resp.headers()["x-darter-served-by"], "p2p");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_as_its_address_is() {
    let (origin, _) = loopback_origin().await;
    let port = origin.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let insecure = format!("[\"localhost:{port}\"]");
    let d = Daemon::start_with_proxy(dir.path(), &[(INSECURE, insecure.as_str())]).await;
    let proxy = d.proxy_port.unwrap();

    let resp = through(&d).get(format!("http://localhost:{port}{SECRET_PATH}")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains(&format!("localhost:{port} resolves to 127.0.0.1, a loopback address")), "{body}");
    let resp = http()
        .get(format!("http://127.0.0.1:{proxy}/v2/test/manifests/latest?ns=localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let (_, head, _) = connect(proxy, "localhost:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(origin.stats(SECRET_PATH).requests, 0);

    // The name allow-listed on its port is reached; on another port it is not.
    let dir2 = tempfile::tempdir().unwrap();
    let allowed = format!("[\"localhost:{port}\"]");
    let d2 = Daemon::start_with_proxy(dir2.path(), &[(ALLOWED, allowed.as_str())]).await;
    let resp = through(&d2).get(format!("http://localhost:{port}{SECRET_PATH}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let other = support::refused_port();
    let resp = through(&d2).get(format!("http://localhost:{other}/")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn connect_opens_tunnels_only_to_the_configured_ports() {
    let (origin, _) = loopback_origin().await;
    let port = origin.addr().port();
    let dir = tempfile::tempdir().unwrap();
    // The destination is allowed; only the port decides.
    let d = Daemon::start_with_proxy(dir.path(), &[(ALLOWED, "[\"127.0.0.1\"]")]).await;
    let (_, head, body) = connect(d.proxy_port.unwrap(), &format!("127.0.0.1:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(body.contains("PORT_DENIED") && body.contains("proxy.connect_ports"), "{body}");

    let dir2 = tempfile::tempdir().unwrap();
    let ports = format!("[443, {port}]");
    let d2 =
        Daemon::start_with_proxy(dir2.path(), &[(ALLOWED, "[\"127.0.0.1\"]"), (CONNECT_PORTS, ports.as_str())]).await;
    let (mut s, head, _) = connect(d2.proxy_port.unwrap(), &format!("127.0.0.1:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(format!("GET {SECRET_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(patience(DEADLINE), s.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.ends_with(SECRET), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn dot_segments_are_refused_before_routing_and_reach_nothing() {
    let (origin, _) = loopback_origin().await;
    let port = origin.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let target = format!("[\"127.0.0.1:{port}\"]");
    let d = Daemon::start_with_proxy(dir.path(), &[(INSECURE, target.as_str()), (ALLOWED, target.as_str())]).await;
    let proxy = d.proxy_port.unwrap();
    let secret = SECRET_PATH.trim_start_matches('/');

    for escape in ["/v2/../", "/v2/%2e%2e/", "/v2/%2E%2e/", "/v2/./../", "/v2/..%2f"] {
        let mirror =
            format!("GET {escape}{secret}?ns=127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = raw(proxy, mirror).await;
        assert_eq!(status, 400, "{escape}: {body}");
        assert!(body.contains("PATH_INVALID"), "{escape}: {body}");
        let forward = format!(
            "GET http://127.0.0.1:{port}{escape}{secret} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw(proxy, forward).await;
        assert_eq!(status, 400, "forward {escape}: {body}");
    }
    assert_eq!(origin.stats(SECRET_PATH).requests, 0, "no upstream request");
    // The same request without the escape is an ordinary relay.
    let plain = format!(
        "GET http://127.0.0.1:{port}{SECRET_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw(proxy, plain).await;
    assert_eq!((status, body.as_bytes()), (200, SECRET));
}

#[tokio::test]
async fn the_back_to_source_of_a_blob_does_not_follow_a_redirect_to_loopback() {
    // The registry is allow-listed; the service it redirects the blob to,
    // another loopback port, is not.
    let inner = Origin::start().await;
    let data = random_bytes(100_000, 15);
    let blob = format!("/v2/test/blobs/sha256:{}", sha256_hex(&data));
    inner.add(&blob, Content::Bytes(data), Behavior::default());
    let registry = Origin::start().await;
    let redirect = Behavior { redirect_to: Some(inner.url(&blob)), ..Behavior::default() };
    registry.add(&blob, Content::Bytes(Bytes::new()), redirect);
    let dir = tempfile::tempdir().unwrap();
    let target = format!("[\"{}\"]", registry.addr());
    let d = Daemon::start_with_proxy(dir.path(), &[(INSECURE, target.as_str()), (ALLOWED, target.as_str())]).await;

    darter_common::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = format!("http://127.0.0.1:{}{blob}?ns={}", d.proxy_port.unwrap(), registry.addr());
    let resp = client.get(url).send().await.unwrap();
    // P2P gave up before its first byte; the relay hands the redirect to the client as it is.
    assert_eq!((resp.status().as_u16(), resp.headers()["x-darter-served-by"].to_str().unwrap()), (302, "upstream"));
    assert_eq!(inner.stats(&blob).requests, 0, "the daemon never fetched from the loopback service");
    let refused = format!("{} is a loopback address", inner.addr());
    assert!(d.log().contains(&refused), "the fallback names the refusal: {}", d.process.log_tail(10));
}

/// A server on loopback that accepts, reads one request head, answers
/// `answer` (maybe nothing) and then stays silent with the connection open.
struct Silent {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start(answer: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = tokio::task::JoinSet::new();
            while let Ok((mut s, _)) = listener.accept().await {
                held.spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(answer).await;
                    // Silent until the peer hangs up.
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_stalled_upstream_is_cut_after_the_idle_timeout() {
    let silent = Silent::start(b"").await;
    let trickle = Silent::start(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b").await;
    let dir = tempfile::tempdir().unwrap();
    let targets = format!("[\"127.0.0.1:{}\", \"127.0.0.1:{}\"]", silent.addr.port(), trickle.addr.port());
    let ports = format!("[{}]", silent.addr.port());
    let d = Daemon::start_with_proxy(
        dir.path(),
        &[
            (INSECURE, targets.as_str()),
            (ALLOWED, targets.as_str()),
            (CONNECT_PORTS, ports.as_str()),
            ("DFDAEMON__PROXY__IDLE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let proxy = d.proxy_port.unwrap();
    let limit = patience(DEADLINE);

    // No answer at all: 504 once the upstream was silent for the idle timeout.
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{proxy}/v2/test/manifests/latest?ns={}", silent.addr);
    let resp = tokio::time::timeout(limit, http().get(url).send()).await.expect("answered").unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(waited >= Duration::from_secs(1), "cut after {waited:?}, before the idle timeout");
    let body = resp.text().await.unwrap();
    assert!(body.contains("UPSTREAM_TIMEOUT") && body.contains("proxy.idle_timeout"), "{body}");

    // An answer that stops halfway: the body is cut short, not held open.
    let url = format!("http://127.0.0.1:{proxy}/v2/test/manifests/latest?ns={}", trickle.addr);
    let resp = tokio::time::timeout(limit, http().get(url).send()).await.expect("answered").unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(limit, resp.bytes()).await.expect("the body ended");
    assert!(body.is_err(), "a body cut short of its length: {body:?}");

    // A tunnel on which nothing moves is closed. Timed from before the
    // CONNECT: the proxy's idle clock starts before its 200 reaches us.
    let started = Instant::now();
    let (mut s, head, _) = connect(proxy, &silent.addr.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(limit, s.read(&mut byte)).await.expect("the tunnel was closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_secs(1), "closed after {:?}", started.elapsed());
}
