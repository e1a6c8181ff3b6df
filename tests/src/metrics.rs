//! One way to read a Prometheus `/metrics` page: [`scrape`] fetches it over
//! plain HTTP/1.1 (Content-Length or chunked, within [`SCRAPE_TIMEOUT`]) and
//! [`value`] finds one series in it by its exact name and labels.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

/// How long connecting, sending and reading the whole page may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET http://{addr}/metrics`: the page's text, or an error when the
/// server cannot be reached, answers anything but `200`, or takes longer
/// than [`SCRAPE_TIMEOUT`].
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    tokio::time::timeout(SCRAPE_TIMEOUT, get(addr))
        .await
        .map_err(|_| anyhow!("GET http://{addr}/metrics: no answer within {SCRAPE_TIMEOUT:?}"))?
        .with_context(|| format!("GET http://{addr}/metrics"))
}

async fn get(addr: SocketAddr) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection ends when `sender` is dropped (or the server closes it).
    tokio::spawn(connection);
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    ensure!(status == http::StatusCode::OK, "{status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]));
    String::from_utf8(body.to_vec()).context("the page is not UTF-8")
}

/// The value of the sample whose series is exactly `name_with_labels` (e.g.
/// `dfdaemon_upload_waiting_requests` or `x_total{kind="a"}`, labels as the
/// page writes them), from a page's `text`; `None` when there is no such line
/// or its value does not parse. Comment lines (`# HELP`, `# TYPE`) are skipped;
/// `NaN` and `+Inf` parse.
pub fn value(text: &str, name_with_labels: &str) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name_with_labels)?;
        // The series ends where whitespace starts: `x_total 1` is not `x 1`.
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        // The value is the first field; a timestamp may follow.
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    const PAGE: &str = "\
# HELP x_total Things.
# TYPE x_total counter
x_total{kind=\"a\"} 3
x_total{kind=\"ab\"} 4
x_total_sum 9.5
x_total 7 1700000000000
dfdaemon_upload_waiting_requests\t2
broken{kind=\"a\"} many
not_a_number NaN
up +Inf
";

    #[test]
    fn value_matches_the_whole_series_only() {
        assert_eq!(value(PAGE, "x_total"), Some(7.0), "not x_total_sum, and the timestamp is ignored");
        assert_eq!(value(PAGE, "x_total_sum"), Some(9.5));
        assert_eq!(value(PAGE, "x_total{kind=\"a\"}"), Some(3.0));
        assert_eq!(value(PAGE, "x_total{kind=\"ab\"}"), Some(4.0));
        assert_eq!(value(PAGE, "dfdaemon_upload_waiting_requests"), Some(2.0));
        assert_eq!(value(PAGE, "up"), Some(f64::INFINITY));
        assert!(value(PAGE, "not_a_number").is_some_and(f64::is_nan));
    }

    #[test]
    fn value_is_none_for_what_is_not_there() {
        assert_eq!(value(PAGE, "x"), None, "a prefix of a series is not the series");
        assert_eq!(value(PAGE, "x_total{kind=\"b\"}"), None);
        assert_eq!(value(PAGE, "broken{kind=\"a\"}"), None, "a value that does not parse");
        assert_eq!(value(PAGE, "# HELP x_total"), None, "comments are not samples");
        assert_eq!(value("", "x_total"), None);
    }

    /// A server on `127.0.0.1:0` that answers one connection with `response`
    /// once it has read the request head.
    async fn serve_once(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if s.read(&mut byte).await.unwrap() == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"GET /metrics HTTP/1.1\r\n"), "{}", String::from_utf8_lossy(&head));
            s.write_all(response.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn scrapes_a_page_with_content_length() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nx_total 42\n\n").await;
        let text = scrape(addr).await.unwrap();
        assert_eq!(text, "x_total 42\n\n");
        assert_eq!(value(&text, "x_total"), Some(42.0));
    }

    #[tokio::test]
    async fn scrapes_a_chunked_page() {
        let addr = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nx_tota\r\n5\r\nl 42\n\r\n6\r\ny 1.5\n\r\n0\r\n\r\n",
        )
        .await;
        let text = scrape(addr).await.unwrap();
        assert_eq!(text, "x_total 42\ny 1.5\n", "chunk sizes are not part of the page");
        assert_eq!(value(&text, "y"), Some(1.5));
    }

    #[tokio::test]
    async fn a_status_other_than_200_is_an_error() {
        let addr = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\n\r\nstarting").await;
        let err = format!("{:#}", scrape(addr).await.unwrap_err());
        assert!(err.contains("503") && err.contains("starting") && err.contains(&addr.to_string()), "{err}");
    }
}
