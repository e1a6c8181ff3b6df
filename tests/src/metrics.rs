//! Reading a service's Prometheus `/metrics` page: one scrape, one parser.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::eventually::patience;

/// The `/metrics` page at `addr` (plain HTTP/1.1, bounded in time).
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: darter\r\nConnection: close\r\n\r\n").await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(patience(Duration::from_secs(5)), exchange)
        .await
        .with_context(|| format!("GET http://{addr}/metrics timed out"))??;
    let text = String::from_utf8(raw).context("metrics page is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of the response head")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "GET http://{addr}/metrics: {}", head.lines().next().unwrap_or(""));
    Ok(body.to_owned())
}

/// The value of the series `series` (a metric name, with its labels as
/// exposed: `x_total{kind="a"}`) in a metrics page.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every series of metric `name` (all label sets).
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = if rest.starts_with('{') { &rest[rest.find('}')? + 1..] } else { rest };
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\na_total_extra 9\n\
        b{kind=\"x\"} 1.5\nb{kind=\"y\"} 2\n";

    #[test]
    fn values_are_read_by_exact_series() {
        assert_eq!(value(PAGE, "a_total"), Some(3.0));
        assert_eq!(value(PAGE, "b{kind=\"y\"}"), Some(2.0));
        assert_eq!(value(PAGE, "a"), None);
        assert_eq!(value(PAGE, "missing"), None);
    }

    #[test]
    fn sums_every_label_set() {
        assert_eq!(sum(PAGE, "b"), 3.5);
        assert_eq!(sum(PAGE, "a_total"), 3.0);
    }

    #[tokio::test]
    async fn scrapes_a_real_metrics_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = prometheus::Registry::new();
        let counter = prometheus::IntCounter::new("kit_scrapes_total", "Scrapes.").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc_by(4);
        let health = darter_common::telemetry::Health::default();
        let server = darter_common::telemetry::MetricsServer::spawn(listener, registry, health);
        let page = scrape(addr).await.unwrap();
        assert_eq!(value(&page, "kit_scrapes_total"), Some(4.0));
        server.stop().await;
        assert!(scrape(addr).await.is_err(), "a stopped server is an error, not an empty page");
    }
}
