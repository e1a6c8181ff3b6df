//! Partial tasks resume only against the same content: the origin is probed
//! again, its validator (ETag) is checked, and a change mid-download is
//! caught by `If-Range` instead of mixing old and new bytes.

mod support;

use std::time::Duration;

use support::Daemon;
use testkit::data::random_bytes;
use testkit::eventually::wait_until;
use testkit::origin::{Behavior, Content, Origin};

const MIB: usize = 1 << 20;

fn etag(v: &str) -> Option<String> {
    Some(format!("\"{v}\""))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_task_from_an_origin_without_ranges_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    let data = random_bytes(16 * MIB, 20);
    let slow = Behavior { ignore_range: true, rate_limit: Some(4 * MIB as u64), ..Default::default() };
    origin.add("/plain", Content::Bytes(data.clone()), slow);
    let out = dir.path().join("plain");
    let r = daemon.dfget(&origin.url("/plain"), &out, &["--timeout", "2s"]).await;
    assert_eq!(r.code, 6, "the first attempt times out part way: {}", r.stderr);
    origin.add("/plain", Content::Bytes(data.clone()), Behavior { ignore_range: true, ..Default::default() });
    let r = daemon.dfget(&origin.url("/plain"), &out, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_origin_starts_the_task_over() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    let old = random_bytes(16 * MIB, 21);
    origin.add(
        "/v",
        Content::Bytes(old),
        Behavior { etag: etag("v1"), rate_limit: Some(MIB as u64), ..Default::default() },
    );
    let out = dir.path().join("v");
    let r = daemon.dfget(&origin.url("/v"), &out, &["--timeout", "2s"]).await;
    assert_eq!(r.code, 6, "{}", r.stderr);
    // Same URL, same length, new content and validator.
    let new = random_bytes(16 * MIB, 22);
    origin.add("/v", Content::Bytes(new.clone()), Behavior { etag: etag("v2"), ..Default::default() });
    let r = daemon.dfget(&origin.url("/v"), &out, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == new, "no old bytes mixed in");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_mid_download_is_caught_and_the_next_try_gets_the_new_content() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[("DFDAEMON__BACK_TO_SOURCE__CONCURRENCY", "1")]).await;
    let old = random_bytes(64 * MIB, 23);
    origin.add(
        "/m",
        Content::Bytes(old),
        Behavior { etag: etag("v1"), rate_limit: Some(16 * MIB as u64), ..Default::default() },
    );
    let out = dir.path().join("m");
    let socket = daemon.socket.clone();
    let (url, out2) = (origin.url("/m"), out.clone());
    let first = tokio::spawn(async move { support::dfget_on(&socket, &url, &out2, &[]).await });
    wait_until("the first segment under way", Duration::from_secs(20), || async {
        origin.stats("/m").body_bytes > MIB as u64
    })
    .await
    .unwrap();
    let new = random_bytes(64 * MIB, 24);
    origin.add("/m", Content::Bytes(new.clone()), Behavior { etag: etag("v2"), ..Default::default() });
    let r = first.await.unwrap();
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("changed"), "{}", r.stderr);
    assert!(!out.exists());
    let r = daemon.dfget(&origin.url("/m"), &out, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == new);
}
