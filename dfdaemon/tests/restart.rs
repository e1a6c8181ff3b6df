//! A dfdaemon killed mid-download resumes after a restart, fetching only the
//! pieces it did not have.

mod support;

use std::time::Duration;

use support::Daemon;
use testkit::data::{random_bytes, sha256_hex};
use testkit::eventually::wait_until;
use testkit::origin::{Behavior, Content, Origin};

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_download_resumes_with_only_the_missing_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let mut daemon = Daemon::start(dir.path(), &[("DFDAEMON__BACK_TO_SOURCE__CONCURRENCY", "2")]).await;
    let len = 32 << 20; // 128 pieces of 256 KiB
    let data = random_bytes(len, 9);
    let digest = format!("sha256:{}", sha256_hex(&data));
    origin.add("/big", Content::Bytes(data.clone()), Behavior { rate_limit: Some(2 << 20), ..Default::default() });
    let url = origin.url("/big");
    let out = dir.path().join("big");

    let socket = daemon.socket.clone();
    let first = tokio::spawn({
        let (url, out, digest) = (url.clone(), out.clone(), digest.clone());
        async move { support::dfget_on(&socket, &url, &out, &["--digest", &digest]).await }
    });
    wait_until("a few pieces on disk", Duration::from_secs(30), || async { origin.stats("/big").body_bytes > 3 << 20 })
        .await
        .unwrap();
    daemon.kill();
    let r = first.await.unwrap();
    assert_ne!(r.code, 0, "the download died with its daemon");
    assert!(!out.exists(), "no partial output");

    daemon.restart().await;
    let held = daemon.stat(&digest).await.expect("the partial task survived the restart");
    let held_bytes: u64 = held.pieces.iter().map(|p| p.length).sum();
    assert!(held_bytes > 0 && held_bytes < len as u64, "partial: {held_bytes}");
    let requests_before = origin.stats("/big").ranges.len();

    origin.add("/big", Content::Bytes(data.clone()), Behavior::default());
    let r = daemon.dfget(&url, &out, &["--digest", &digest]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == data);

    let held_numbers: std::collections::HashSet<u64> = held.pieces.iter().map(|p| p.offset).collect();
    let after: Vec<String> = origin.stats("/big").ranges[requests_before..].iter().flatten().cloned().collect();
    // The origin is probed again (is it still the same content?), then only
    // the missing pieces are asked for.
    assert_eq!(after.first().map(String::as_str), Some("bytes=0-0"), "{after:?}");
    let after = &after[1..];
    let mut fetched = 0u64;
    for r in after {
        let (a, b) = r.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        assert!(!held_numbers.contains(&a), "piece at {a} was already held but fetched again");
        fetched += b - a + 1;
    }
    assert_eq!(fetched, len as u64 - held_bytes, "exactly the missing bytes were fetched after the restart");
}
