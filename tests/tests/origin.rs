//! The test origin over real sockets: ranges, misbehaviour and byte counting.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use testkit::origin::{Behavior, Content, Origin};
use testkit::random_bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What a client saw: status, headers, the body bytes received, and whether
/// the body ended in an error.
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    body_error: bool,
}

async fn fetch(method: Method, url: &str, headers: &[(&str, &str)]) -> Seen {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client().request(req.body(Empty::new()).unwrap()).await.unwrap();
    let (parts, mut body) = resp.into_parts();
    let mut seen = Seen { status: parts.status, headers: parts.headers, body: Vec::new(), body_error: false };
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => seen.body.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
            Err(_) => {
                seen.body_error = true;
                break;
            }
        }
    }
    seen
}

async fn get(url: &str, headers: &[(&str, &str)]) -> Seen {
    fetch(Method::GET, url, headers).await
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

async fn origin_with(data: &Bytes, behavior: Behavior) -> Origin {
    let origin = Origin::start().await;
    origin.add("/f", Content::Bytes(data.clone()), behavior);
    origin
}

#[tokio::test]
async fn full_get_has_length_and_counts_bytes() {
    let data = random_bytes(1_000_000, 1);
    let origin = origin_with(&data, Behavior::default()).await;
    let seen = get(&origin.url("/f"), &[("x-test", "yes")]).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(header(&seen, "content-length"), Some("1000000"));
    assert_eq!(header(&seen, "accept-ranges"), Some("bytes"));
    assert!(seen.body == data, "body differs");
    let stats = origin.stats("f");
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.body_bytes, 1_000_000);
    assert_eq!(stats.ranges, vec![None]);
    assert!(stats.last_headers.contains(&("x-test".to_owned(), "yes".to_owned())));
    assert_eq!(origin.total_body_bytes(), 1_000_000);
}

#[tokio::test]
async fn ranges_are_served_as_206() {
    let data = random_bytes(10_000, 2);
    let origin = origin_with(&data, Behavior::default()).await;
    let url = origin.url("/f");

    let seen = get(&url, &[("range", "bytes=100-199")]).await;
    assert_eq!(seen.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&seen, "content-range"), Some("bytes 100-199/10000"));
    assert_eq!(header(&seen, "content-length"), Some("100"));
    assert_eq!(seen.body, data[100..200]);

    let seen = get(&url, &[("range", "bytes=9000-")]).await;
    assert_eq!(header(&seen, "content-range"), Some("bytes 9000-9999/10000"));
    assert_eq!(seen.body, data[9000..]);

    let seen = get(&url, &[("range", "bytes=-300")]).await;
    assert_eq!(seen.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&seen, "content-range"), Some("bytes 9700-9999/10000"));
    assert_eq!(seen.body, data[9700..]);

    let stats = origin.stats("/f");
    assert_eq!(stats.body_bytes, 100 + 1000 + 300);
    let ranges: Vec<_> = stats.ranges.iter().map(|r| r.as_deref()).collect();
    assert_eq!(ranges, [Some("bytes=100-199"), Some("bytes=9000-"), Some("bytes=-300")]);
}

#[tokio::test]
async fn unsatisfiable_range_is_416() {
    let data = random_bytes(500, 3);
    let origin = origin_with(&data, Behavior::default()).await;
    let seen = get(&origin.url("/f"), &[("range", "bytes=500-")]).await;
    assert_eq!(seen.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&seen, "content-range"), Some("bytes */500"));
    assert!(seen.body.is_empty());
    assert_eq!(origin.stats("/f").body_bytes, 0);
}

#[tokio::test]
async fn ignore_range_answers_200_with_everything() {
    let data = random_bytes(4096, 4);
    let behavior = Behavior { ignore_range: true, ..Default::default() };
    let origin = origin_with(&data, behavior).await;
    let seen = get(&origin.url("/f"), &[("range", "bytes=0-9")]).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(header(&seen, "accept-ranges"), None);
    assert!(seen.body == data);
}

#[tokio::test]
async fn no_content_length_uses_chunked_encoding() {
    let data = random_bytes(700_000, 5);
    let behavior = Behavior { no_content_length: true, ..Default::default() };
    let origin = origin_with(&data, behavior).await;
    let seen = get(&origin.url("/f"), &[]).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(header(&seen, "content-length"), None);
    assert_eq!(header(&seen, "transfer-encoding"), Some("chunked"));
    assert!(seen.body == data);
}

#[tokio::test]
async fn status_and_unknown_paths() {
    let data = random_bytes(100, 6);
    let origin = origin_with(&data, Behavior { status: Some(500), ..Default::default() }).await;
    origin.add("/gone", Content::Bytes(data.clone()), Behavior { status: Some(404), ..Default::default() });
    assert_eq!(get(&origin.url("/f"), &[]).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(get(&origin.url("/gone"), &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&origin.url("/nothing"), &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(origin.stats("/nothing").requests, 1);
    assert_eq!(origin.total_body_bytes(), 0, "error bodies are not counted");
}

#[tokio::test]
async fn reset_after_cuts_the_body_and_counts_only_what_was_sent() {
    let data = random_bytes(1_000_000, 7);
    let behavior = Behavior { reset_after: Some(300_000), ..Default::default() };
    let origin = origin_with(&data, behavior).await;
    for _ in 0..2 {
        let seen = get(&origin.url("/f"), &[]).await;
        assert_eq!(seen.status, StatusCode::OK);
        assert!(seen.body_error, "client must see the body fail");
        assert!(seen.body.len() <= 300_000, "got {} bytes", seen.body.len());
        assert_eq!(seen.body, data[..seen.body.len()]);
    }
    assert_eq!(origin.stats("/f").body_bytes, 600_000);
}

#[tokio::test]
async fn reset_once_only_breaks_the_first_request() {
    let data = random_bytes(200_000, 8);
    let behavior = Behavior { reset_after: Some(1000), reset_once: true, ..Default::default() };
    let origin = origin_with(&data, behavior).await;
    let first = get(&origin.url("/f"), &[]).await;
    assert!(first.body_error);
    let second = get(&origin.url("/f"), &[]).await;
    assert!(!second.body_error);
    assert!(second.body == data);
    assert_eq!(origin.stats("/f").body_bytes, 1000 + 200_000);
}

#[tokio::test]
async fn redirect_and_required_header() {
    let data = random_bytes(100, 9);
    let origin = origin_with(&data, Behavior::default()).await;
    let target = origin.url("/f");
    origin.add(
        "/old",
        Content::Bytes(data.clone()),
        Behavior { redirect_to: Some(target.clone()), ..Default::default() },
    );
    let seen = get(&origin.url("/old"), &[]).await;
    assert_eq!(seen.status, StatusCode::FOUND);
    assert_eq!(header(&seen, "location"), Some(target.as_str()));

    let guarded = Behavior { require_header: Some(("authorization".into(), "Bearer t".into())), ..Default::default() };
    origin.add("/secret", Content::Bytes(data.clone()), guarded);
    let denied = get(&origin.url("/secret"), &[("authorization", "Bearer x")]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let allowed = get(&origin.url("/secret"), &[("Authorization", "Bearer t")]).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert!(allowed.body == data);
    assert_eq!(origin.total_body_bytes(), 100);
}

#[tokio::test]
async fn head_sends_headers_only() {
    let data = random_bytes(12_345, 10);
    let origin = origin_with(&data, Behavior::default()).await;
    let seen = fetch(Method::HEAD, &origin.url("/f"), &[]).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(header(&seen, "content-length"), Some("12345"));
    assert!(seen.body.is_empty());
    let seen = fetch(Method::HEAD, &origin.url("/f"), &[("range", "bytes=0-99")]).await;
    assert_eq!(seen.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&seen, "content-length"), Some("100"));
    assert_eq!(origin.stats("/f").requests, 2);
    assert_eq!(origin.total_body_bytes(), 0);
}

#[tokio::test]
async fn keep_alive_serves_requests_on_one_connection() {
    let origin = origin_with(&Bytes::from_static(b"hello"), Behavior::default()).await;
    let mut conn = tokio::net::TcpStream::connect(origin.addr()).await.unwrap();
    let req = b"GET /f HTTP/1.1\r\nhost: x\r\n\r\n";
    conn.write_all(&[&req[..], &req[..]].concat()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.windows(5).filter(|w| w == b"hello").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await.unwrap().unwrap();
        assert_ne!(n, 0, "connection closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(origin.stats("/f").requests, 2);
}

#[tokio::test]
async fn serves_files_and_concurrent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let len = 3 * (256 << 10) + 17;
    let digest = testkit::write_random_file(&path, len, 11).unwrap();
    let origin = Origin::start().await;
    origin.add("/blob", Content::File(path), Behavior::default());
    let url = origin.url("/blob");
    let fetches = (0..8).map(|_| get(&url, &[]));
    for seen in futures::future::join_all(fetches).await {
        assert_eq!(seen.status, StatusCode::OK);
        assert_eq!(testkit::sha256_hex(&seen.body), digest);
    }
    let seen = get(&url, &[("range", "bytes=262140-262150")]).await;
    assert_eq!(seen.body, random_bytes(len as usize, 11)[262140..=262150]);
    assert_eq!(origin.total_body_bytes(), 8 * len + 11);
}

#[tokio::test]
async fn rate_limit_and_header_delay_slow_responses() {
    let data = random_bytes(100_000, 12);
    let behavior =
        Behavior { rate_limit: Some(400_000), header_delay: Some(Duration::from_millis(100)), ..Default::default() };
    let origin = origin_with(&data, behavior).await;
    let started = Instant::now();
    let seen = get(&origin.url("/f"), &[]).await;
    let elapsed = started.elapsed();
    assert!(seen.body == data);
    // 100 ms delay + 100 KB at 400 KB/s = 250 ms body.
    assert!(elapsed >= Duration::from_millis(330), "took only {elapsed:?}");
}

#[tokio::test]
async fn dropping_the_origin_stops_serving() {
    let origin = origin_with(&Bytes::from_static(b"x"), Behavior::default()).await;
    let addr = origin.addr();
    drop(origin);
    testkit::eventually::wait_until("listener to close", Duration::from_secs(5), || async {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await
    .unwrap();
}
