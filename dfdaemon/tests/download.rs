//! dfget -> dfdaemon -> origin, over real sockets and processes.

mod support;

use std::time::Duration;

use support::Daemon;
use testkit::data::{random_bytes, sha256_hex};
use testkit::origin::{Behavior, Content, Origin};

const MIB: usize = 1 << 20;

/// Fast retries so failure tests finish quickly.
const FAST_RETRIES: &[(&str, &str)] = &[("DFDAEMON__BACK_TO_SOURCE__MAX_ATTEMPTS", "2")];

fn digest_arg(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_files_of_every_size() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    for (name, len) in [
        ("empty", 0usize),
        ("tiny", 7),
        ("one-piece", 200 * 1024),
        ("exact-piece", 256 * 1024),
        ("many-pieces", 300 * MIB + 12345),
    ] {
        let data = random_bytes(len, len as u64);
        origin.add(&format!("/{name}"), Content::Bytes(data.clone()), Behavior::default());
        let out = dir.path().join(name);
        let r = daemon.dfget(&origin.url(&format!("/{name}")), &out, &[]).await;
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), len, "{name}");
        assert!(got == data, "{name}: content differs");
        // Every byte came from the origin exactly once (plus the 1-byte probe).
        let stats = origin.stats(&format!("/{name}"));
        assert!(stats.body_bytes <= len as u64 + 1, "{name}: origin sent {} for {len}", stats.body_bytes);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_without_range_or_length_is_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    let data = random_bytes(9 * MIB + 3, 1);
    origin.add("/norange", Content::Bytes(data.clone()), Behavior { ignore_range: true, ..Default::default() });
    origin.add(
        "/chunked",
        Content::Bytes(data.clone()),
        Behavior { ignore_range: true, no_content_length: true, ..Default::default() },
    );
    for path in ["/norange", "/chunked"] {
        let out = dir.path().join(&path[1..]);
        let r = daemon.dfget(&origin.url(path), &out, &["--digest", &digest_arg(&data)]).await;
        assert_eq!(r.code, 0, "{path}: {}", r.stderr);
        assert!(std::fs::read(&out).unwrap() == data, "{path}");
        assert_eq!(origin.stats(path).body_bytes, data.len() as u64, "{path}: streamed once");
        // Next path shares the digest, hence the task: drop it from storage.
        let deleted = daemon.stat(&digest_arg(&data)).await;
        assert!(deleted.is_ok());
        let channel = dfdaemon::dfget::connect(&daemon.socket).await.unwrap();
        darter_proto::dfdaemon::v1::dfdaemon_download_client::DfdaemonDownloadClient::new(channel)
            .delete_task(darter_proto::dfdaemon::v1::DeleteTaskRequest { task_id: digest_arg(&data) })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_errors_are_clear_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), FAST_RETRIES).await;
    let data = random_bytes(4 * MIB, 2);
    origin.add("/e404", Content::Bytes(data.clone()), Behavior { status: Some(404), ..Default::default() });
    origin.add("/e500", Content::Bytes(data.clone()), Behavior { status: Some(500), ..Default::default() });
    origin.add(
        "/reset",
        Content::Bytes(data.clone()),
        Behavior { reset_after: Some(1000), ignore_range: true, ..Default::default() },
    );
    origin.add(
        "/reset-ranged",
        Content::Bytes(data.clone()),
        Behavior { reset_after: Some(1000), ..Default::default() },
    );
    for (path, needle) in [("/e404", "404"), ("/e500", "500"), ("/reset", "origin"), ("/reset-ranged", "origin")] {
        let out = dir.path().join(&path[1..]);
        let r = daemon.dfget(&origin.url(path), &out, &[]).await;
        assert_eq!(r.code, 4, "{path}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{path}: {}", r.stderr);
        assert!(!out.exists(), "{path}: no output file");
    }
    let r =
        daemon.dfget(&format!("http://127.0.0.1:{}/x", support::refused_port()), &dir.path().join("dead"), &[]).await;
    assert_eq!(r.code, 4, "dead origin: {}", r.stderr);
    assert!(r.stderr.contains("unreachable"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_mid_body_resumes_from_where_it_broke() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[("DFDAEMON__BACK_TO_SOURCE__CONCURRENCY", "1")]).await;
    let data = random_bytes(MIB, 3);
    // The first content request is the 1-byte probe; the first piece request breaks after 100 KiB.
    origin.add(
        "/flaky",
        Content::Bytes(data.clone()),
        Behavior { reset_after: Some(100 * 1024), reset_once: true, ..Default::default() },
    );
    let out = dir.path().join("flaky");
    let r = daemon.dfget(&origin.url("/flaky"), &out, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == data);
    let ranges: Vec<String> = origin.stats("/flaky").ranges.into_iter().flatten().collect();
    let resumed_mid_piece = ranges.iter().any(|r| {
        let start: u64 = r.trim_start_matches("bytes=").split('-').next().unwrap().parse().unwrap();
        !start.is_multiple_of(256 * 1024)
    });
    assert!(resumed_mid_piece, "a broken piece resumes from the byte where it broke: {ranges:?}");
    let sent = origin.stats("/flaky").body_bytes;
    assert!(sent <= data.len() as u64 + 1, "resumed, not refetched: {sent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_origin_hits_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    origin.add(
        "/slow",
        Content::Bytes(random_bytes(8 * MIB, 4)),
        Behavior { rate_limit: Some(256 * 1024), ..Default::default() },
    );
    let out = dir.path().join("slow");
    let started = std::time::Instant::now();
    let r = daemon.dfget(&origin.url("/slow"), &out, &["--timeout", "1s"]).await;
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    // The origin needs 32 s for the whole body: the 1 s timeout ended it.
    assert!(started.elapsed() < testkit::eventually::patience(Duration::from_secs(10)));
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_mismatch_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    let data = random_bytes(3 * MIB, 5);
    origin.add("/blob", Content::Bytes(data.clone()), Behavior::default());
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = dir.path().join("blob");
    let r = daemon.dfget(&origin.url("/blob"), &out, &["--digest", &wrong]).await;
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("digest mismatch"), "{}", r.stderr);
    assert!(!out.exists());
    let stat = daemon.stat(&wrong).await.unwrap_err();
    assert_eq!(stat.code(), tonic::Code::NotFound, "nothing stored under the wrong digest");
    let r = daemon.dfget(&origin.url("/blob"), &out, &["--digest", &digest_arg(&data)]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == data);
    let r = daemon.dfget(&origin.url("/blob"), &dir.path().join("x"), &["--digest", "md5:abc"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_share_one_download_and_cached_ones_skip_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    let data = random_bytes(16 * MIB, 6);
    origin.add(
        "/shared",
        Content::Bytes(data.clone()),
        Behavior { rate_limit: Some(8 * MIB as u64), ..Default::default() },
    );
    let url = origin.url("/shared");
    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    let (a, b) = tokio::join!(daemon.dfget(&url, &out_a, &[]), daemon.dfget(&url, &out_b, &[]));
    assert_eq!((a.code, b.code), (0, 0), "{} {}", a.stderr, b.stderr);
    assert!(std::fs::read(dir.path().join("a")).unwrap() == data);
    assert!(std::fs::read(dir.path().join("b")).unwrap() == data);
    let sent = origin.stats("/shared").body_bytes;
    assert!(sent <= data.len() as u64 + 1, "origin served the bytes once, not twice: {sent}");
    let requests = origin.stats("/shared").requests;
    let r = daemon.dfget(&url, &dir.path().join("c"), &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(dir.path().join("c")).unwrap() == data);
    assert_eq!(origin.stats("/shared").requests, requests, "a completed task is served from disk");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_pass_through_and_redirects_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), FAST_RETRIES).await;
    let data = random_bytes(MIB, 7);
    origin.add(
        "/private",
        Content::Bytes(data.clone()),
        Behavior { require_header: Some(("x-token".into(), "s3cret".into())), ..Default::default() },
    );
    origin.add(
        "/moved",
        Content::Bytes(data.clone()),
        Behavior { redirect_to: Some("/private".into()), ..Default::default() },
    );
    let r = daemon.dfget(&origin.url("/private"), &dir.path().join("denied"), &[]).await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    let out = dir.path().join("moved");
    let r = daemon.dfget(&origin.url("/moved"), &out, &["-H", "X-Token: s3cret", "--tag", "t1"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == data);
    assert!(!daemon.log().contains("s3cret"), "header values never logged");
    let r = daemon.dfget(&origin.url("/moved"), &out, &["-H", "no-colon"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn back_to_source_disabled_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    origin.add("/f", Content::Bytes(random_bytes(1000, 8)), Behavior::default());
    let out = dir.path().join("f");
    let r = daemon.dfget(&origin.url("/f"), &out, &["--disable-back-to-source"]).await;
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("back-to-source is disabled"), "{}", r.stderr);
    assert_eq!(origin.stats("/f").requests, 0, "never a silent origin fetch");
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_daemon_dfget_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let r = support::dfget_on(&dir.path().join("none.sock"), "http://127.0.0.1:1/x", &dir.path().join("o"), &[]).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("no dfdaemon is listening") && r.stderr.contains("start one with `dfdaemon`"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_shows_on_a_terminal_and_nothing_prints_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    let data = random_bytes(4 * MIB, 15);
    origin.add("/p", Content::Bytes(data.clone()), Behavior { rate_limit: Some(MIB as u64), ..Default::default() });
    // Not a terminal, no flags: silent on success.
    let quiet = tokio::process::Command::new(env!("CARGO_BIN_EXE_dfget"))
        .arg(origin.url("/p"))
        .arg("-O")
        .arg(dir.path().join("quiet"))
        .arg("--socket")
        .arg(&daemon.socket)
        .output()
        .await
        .unwrap();
    assert!(quiet.status.success());
    assert!(quiet.stdout.is_empty() && quiet.stderr.is_empty(), "{}", String::from_utf8_lossy(&quiet.stderr));
    // On a terminal (a pty from `script`), a bar with bytes, rate and ETA.
    origin.add("/p2", Content::Bytes(data), Behavior { rate_limit: Some(MIB as u64), ..Default::default() });
    let cmd = format!(
        "{} {} -O {} --socket {}",
        env!("CARGO_BIN_EXE_dfget"),
        origin.url("/p2"),
        dir.path().join("tty").display(),
        daemon.socket.display()
    );
    let tty = tokio::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().await.unwrap();
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{screen}");
    assert!(screen.contains("ETA") && screen.contains("MiB"), "{screen}");
    assert!(screen.contains("downloaded 4.0 MiB"), "{screen}");
}
