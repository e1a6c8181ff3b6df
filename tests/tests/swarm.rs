//! The swarm end to end: a real scheduler, seed peer and peers (processes on
//! loopback) downloading from a byte-counting origin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::cluster::{Cluster, ClusterOptions};
use testkit::dfdaemon::{DaemonProcess, DfgetRun, bin_dir};
use testkit::eventually::wait_until;
use testkit::origin::{Behavior, Content, Origin};
use testkit::{random_bytes, sha256_file, sha256_hex};

const MIB: usize = 1 << 20;

async fn dfget(daemon: &DaemonProcess, url: &str, out: &Path, args: &[&str]) -> DfgetRun {
    daemon.dfget(url, out, &[&["--timeout", "5m"], args].concat()).await
}

async fn all_download(cluster: &Cluster, url: &str, dir: &Path, args: &[&str]) -> Vec<(PathBuf, DfgetRun)> {
    let runs = cluster.peers.iter().enumerate().map(|(i, p)| {
        let out = dir.join(format!("out-{i}"));
        async move {
            let r = dfget(p, url, &out, args).await;
            (out, r)
        }
    });
    futures::future::join_all(runs).await
}

fn logs(cluster: &Cluster) -> String {
    cluster.logs()
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_peers_get_the_file_while_the_origin_serves_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&ClusterOptions::new(dir.path(), &bin_dir(), 8)).await.unwrap();
    let origin = Origin::start().await;
    let size = 256 * MIB;
    let data = random_bytes(size, 31);
    let expected = sha256_hex(&data);
    origin.add("/big", Content::Bytes(data), Behavior::default());
    let runs = all_download(&cluster, &origin.url("/big"), dir.path(), &[]).await;
    for (out, r) in &runs {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
        assert_eq!(sha256_file(out).unwrap(), expected, "{}", out.display());
    }
    let sent = origin.total_body_bytes();
    assert!(sent as f64 <= size as f64 * 1.05, "origin sent {sent} bytes for a {size}-byte file\n{}", logs(&cluster));
    let from_peers = runs.iter().filter(|(_, r)| !r.stderr.contains("peers 0 B")).count();
    assert!(
        from_peers >= 7,
        "peers fetched from each other: {:?}",
        runs.iter().map(|(_, r)| &r.stderr).collect::<Vec<_>>()
    );
}

fn options(dir: &Path, peers: usize, env: &[(&str, &str)]) -> ClusterOptions {
    let mut o = ClusterOptions::new(dir, &bin_dir(), peers);
    o.daemon_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    o
}

/// Short stalls so that failover is quick in tests.
const QUICK: &[(&str, &str)] = &[("DFDAEMON__P2P__STALL_TIMEOUT", "3s"), ("DFDAEMON__P2P__PIECE_TIMEOUT", "5s")];

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_killed_mid_transfer_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 4, QUICK)).await.unwrap();
    let origin = Origin::start().await;
    let size = 64 * MIB;
    let data = random_bytes(size, 32);
    let expected = sha256_hex(&data);
    // Slow enough that the swarm is mid-transfer when a peer dies.
    origin.add("/f", Content::Bytes(data), Behavior { rate_limit: Some(4 * MIB as u64), ..Default::default() });
    let url = origin.url("/f");
    let victim_pid = cluster.peers[0].pid().unwrap();
    let victim_out = dir.path().join("victim");
    let victim = dfget(&cluster.peers[0], &url, &victim_out, &[]);
    let survivors = futures::future::join_all(cluster.peers[1..].iter().enumerate().map(|(i, p)| {
        let out = dir.path().join(format!("out-{i}"));
        let url = url.clone();
        async move {
            let r = dfget(p, &url, &out, &[]).await;
            (out, r)
        }
    }));
    let kill = async {
        wait_until("a third of the file at the origin", Duration::from_secs(60), || async {
            origin.total_body_bytes() > (size / 3) as u64
        })
        .await
        .unwrap();
        let killed = std::process::Command::new("kill").args(["-9", &victim_pid.to_string()]).status().unwrap();
        assert!(killed.success());
    };
    let (victim, runs, ()) = tokio::join!(victim, survivors, kill);
    assert_ne!(victim.code, 0, "the killed peer's download failed with it");
    for (out, r) in &runs {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
        assert_eq!(sha256_file(out).unwrap(), expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_serving_corrupt_pieces_is_rejected_and_blocklisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&options(dir.path(), 2, &[])).await.unwrap();
    let liar = cluster.add_peer(&[("DFDAEMON_FAULT_CORRUPT_PIECES", "1")]).await.unwrap();
    let origin = Origin::start().await;
    let size = 32 * MIB;
    let data = random_bytes(size, 34);
    let expected = sha256_hex(&data);
    origin.add("/c", Content::Bytes(data), Behavior::default());
    let url = origin.url("/c");
    // The liar gets the file first, so the scheduler offers it as a full parent.
    let r = dfget(&cluster.peers[liar], &url, &dir.path().join("liar"), &[]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
    let honest = futures::future::join_all((0..2).map(|i| {
        let (out, url, peer) = (dir.path().join(format!("honest-{i}")), url.clone(), &cluster.peers[i]);
        async move { (out.clone(), dfget(peer, &url, &out, &[]).await) }
    }))
    .await;
    for (out, r) in &honest {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
        assert_eq!(sha256_file(out).unwrap(), expected, "no corrupted byte got through");
    }
    let rejected = cluster.peers[..2].iter().filter(|p| p.log().contains("does not match its digest")).count();
    assert!(rejected >= 1, "a child met the liar and rejected its pieces\n{}", logs(&cluster));
    assert!(origin.total_body_bytes() as f64 <= size as f64 * 1.05, "the origin was not asked again");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_scheduler_peers_finish_from_the_origin_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&options(dir.path(), 3, QUICK)).await.unwrap();
    let origin = Origin::start().await;
    let size = 64 * MIB;
    let data = random_bytes(size, 35);
    let expected = sha256_hex(&data);
    origin.add("/s", Content::Bytes(data), Behavior { rate_limit: Some(4 * MIB as u64), ..Default::default() });
    let url = origin.url("/s");
    let scheduler_pid_kill = async {
        wait_until("the swarm under way", Duration::from_secs(60), || async {
            origin.total_body_bytes() > (size / 4) as u64
        })
        .await
        .unwrap();
    };
    let (runs, ()) = tokio::join!(all_download(&cluster, &url, dir.path(), &[]), async {
        scheduler_pid_kill.await;
        let pid = cluster.scheduler.pid().unwrap();
        assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    });
    for (out, r) in &runs {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
        assert_eq!(sha256_file(out).unwrap(), expected);
    }
    cluster.scheduler.kill();
    // A new download with back-to-source disabled fails clearly, and the origin is not touched.
    origin.add("/t", Content::Bytes(random_bytes(MIB, 36)), Behavior::default());
    let r = dfget(&cluster.peers[0], &origin.url("/t"), &dir.path().join("t"), &["--disable-back-to-source"]).await;
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("no scheduler is reachable"), "{}", r.stderr);
    assert_eq!(origin.stats("/t").requests, 0);
    // Without the flag it goes to the origin directly.
    let r = dfget(&cluster.peers[0], &origin.url("/t"), &dir.path().join("t"), &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_scheduler_is_repopulated_by_the_peers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&options(dir.path(), 3, QUICK)).await.unwrap();
    let origin = Origin::start().await;
    let size = 16 * MIB;
    let (a, b) = (random_bytes(size, 37), random_bytes(size, 38));
    let (expected_a, expected_b) = (sha256_hex(&a), sha256_hex(&b));
    origin.add("/a", Content::Bytes(a), Behavior::default());
    origin.add("/b", Content::Bytes(b), Behavior::default());
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    for (out, r) in all_download(&cluster, &origin.url("/a"), &first, &[]).await {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
        assert_eq!(sha256_file(out).unwrap(), expected_a);
    }
    cluster.scheduler.restart().await.unwrap();
    // New downloads work once the peers have announced themselves again.
    for (out, r) in all_download(&cluster, &origin.url("/b"), dir.path(), &[]).await {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
        assert_eq!(sha256_file(out).unwrap(), expected_b);
    }
    let sent_b = origin.stats("/b").body_bytes;
    assert!(sent_b as f64 <= size as f64 * 1.05, "one origin copy after the restart: {sent_b}\n{}", logs(&cluster));
    // A task the restarted scheduler never saw, held by the seed: a new peer
    // gets it from the swarm (the seed tells the scheduler what it holds),
    // not from the origin again.
    // The seed is known again once it re-announced itself (every second here);
    // until then the scheduler rightly has no seed to send the newcomer to.
    let scheduler_log = cluster.scheduler.log_path.clone();
    // "host announced ... seed=true" when the seed announced itself after the
    // manager listed it, "host reclassified ... seed=true" when the listing
    // came second (seed is the last field); logged by the restarted scheduler
    // (after its last "scheduler ready" line).
    let seed_known_again = || {
        let log = std::fs::read_to_string(&scheduler_log).unwrap_or_default();
        let restarted = log.rfind("scheduler ready").map_or("", |i| &log[i..]);
        restarted.lines().any(|l| {
            (l.contains("host announced") || l.contains("host reclassified")) && l.trim_end().ends_with("true")
        })
    };
    wait_until("the seed to announce itself to the restarted scheduler", Duration::from_secs(10), || async {
        seed_known_again()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&cluster)));
    let sent_a = origin.stats("/a").body_bytes;
    let newcomer = cluster.add_peer(QUICK).await.unwrap();
    let r = dfget(&cluster.peers[newcomer], &origin.url("/a"), &dir.path().join("newcomer"), &[]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
    assert_eq!(sha256_file(dir.path().join("newcomer")).unwrap(), expected_a);
    assert_eq!(origin.stats("/a").body_bytes, sent_a, "the seed's copy served the newcomer\n{}", logs(&cluster));
}

/// Signed-URL secrets and credentials never reach a daemon's disk: every
/// `task.json` (the seed's, fetched from the origin, and the peers', fetched
/// from parents) records the URL without its query and user info.
#[tokio::test(flavor = "multi_thread")]
async fn no_task_record_keeps_a_signed_urls_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 2, QUICK)).await.unwrap();
    let origin = Origin::start().await;
    let data = random_bytes(4 * MIB, 39);
    let expected = sha256_hex(&data);
    origin.add("/signed", Content::Bytes(data), Behavior::default());
    let url = format!("{}?X-Amz-Signature=hush-hush&X-Amz-Credential=key-id", origin.url("/signed"));
    for (out, r) in all_download(&cluster, &url, dir.path(), &[]).await {
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, logs(&cluster));
        assert_eq!(sha256_file(out).unwrap(), expected);
    }
    let mut records = 0;
    for daemon in cluster.seed.iter().chain(&cluster.peers) {
        for entry in walk(&daemon.options.dir.join("data")) {
            if entry.file_name().is_some_and(|n| n == "task.json") {
                let text = std::fs::read_to_string(&entry).unwrap();
                assert!(!text.contains("hush-hush") && !text.contains("key-id"), "{}: {text}", entry.display());
                assert!(text.contains("/signed"), "{}: {text}", entry.display());
                records += 1;
            }
        }
    }
    assert!(records >= 3, "the seed and both peers recorded the task ({records} records)");
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}
