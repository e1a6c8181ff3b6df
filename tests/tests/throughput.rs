//! Speed checks of the test kit itself: the origin must not be the
//! bottleneck of a benchmark, and fixtures must be cheap to generate.
//!
//! Ignored by default (they want a release build and a quiet machine, and
//! one writes 1 GiB):
//! `cargo nextest run --release -p darter-tests --run-ignored only -E 'binary(throughput)' --test-threads 1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::origin::{Behavior, Content, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEN: u64 = 1 << 30;

/// Sends `request` (if any) and reads until EOF; returns GB/s of `LEN`.
async fn read_to_end(addr: SocketAddr, request: &[u8]) -> f64 {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0u64;
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    assert!(received >= LEN, "short read: {received}");
    LEN as f64 / started.elapsed().as_secs_f64() / 1e9
}

/// The loopback ceiling: a server that writes `LEN` bytes of one buffer.
async fn raw_loopback_gbps() -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let buf = vec![7u8; 256 << 10];
        for _ in 0..LEN / buf.len() as u64 {
            conn.write_all(&buf).await.unwrap();
        }
    });
    let gbps = read_to_end(addr, b"").await;
    server.await.unwrap();
    gbps
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "1 GiB throughput check; run in release"]
async fn origin_serves_a_file_above_1gbps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let write = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || testkit::write_random_file(path, LEN, 1))
    };
    write.await.unwrap().unwrap();
    let origin = Origin::start().await;
    origin.add("/blob", Content::File(path), Behavior::default());

    let request = b"GET /blob HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let mut best = 0.0f64;
    for _ in 0..3 {
        best = best.max(read_to_end(origin.addr(), request).await);
    }
    let raw = raw_loopback_gbps().await;
    eprintln!("origin best {best:.2} GB/s; raw loopback {raw:.2} GB/s");
    assert!(
        best > 1.0,
        "origin best {best:.2} GB/s (raw loopback {raw:.2} GB/s)"
    );
}

#[test]
#[ignore = "speed check"]
fn random_bytes_generates_300mib_in_under_a_second() {
    let started = Instant::now();
    let data = testkit::random_bytes(300 << 20, 3);
    let elapsed = started.elapsed();
    eprintln!("random_bytes: 300 MiB in {elapsed:?}");
    assert_eq!(data.len(), 300 << 20);
    // The brief: under 1 s optimised, a few seconds unoptimised.
    let limit = Duration::from_secs(if cfg!(debug_assertions) { 5 } else { 1 });
    assert!(elapsed < limit, "took {elapsed:?}");
}
