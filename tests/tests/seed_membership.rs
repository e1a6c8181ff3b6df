//! Prompt membership (issue 15): a seed peer that joins after its scheduler
//! last asked the manager counts from its first announcement (its seed peer
//! certificate says what it is), not from the manager's next answer.

use testkit::cluster::{Cluster, ClusterOptions};
use testkit::dfdaemon::bin_dir;
use testkit::origin::{Behavior, Content, Origin};
use testkit::{random_bytes, sha256_file, sha256_hex};

/// The scheduler asks the manager for the cluster's seed peers once at
/// registration (before the seed exists) and then only hourly. The kit's
/// cluster still starts, which waits for the scheduler to count the seed,
/// and the first download is served through the seed: the peer receives
/// the bytes from the swarm and the seed is the one that fetched them.
#[tokio::test(flavor = "multi_thread")]
async fn a_seed_counts_from_its_first_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ClusterOptions::new(dir.path(), &bin_dir(), 1).with_manager();
    options.scheduler_env.push(("SCHEDULER__MANAGER__REFRESH_INTERVAL".into(), "1h".into()));
    // Cluster::start waits for the scheduler's `scheduler_seed_peers_announced`
    // to count the seed: before, that took the manager's next answer (an hour).
    let cluster = Cluster::start(&options).await.unwrap();
    let origin = Origin::start().await;
    let data = random_bytes(4 << 20, 152);
    origin.add("/blob", Content::Bytes(data.clone()), Behavior::default());
    let out = dir.path().join("out");
    let r = cluster.peers[0].dfget(&origin.url("/blob"), &out, &["--timeout", "2m"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, cluster.logs());
    assert_eq!(sha256_file(&out).unwrap(), sha256_hex(&data));
    assert!(!r.stderr.contains("peers 0 B"), "served through the swarm: {}", r.stderr);
    let seed = cluster.seed.as_ref().expect("a seed");
    assert!(
        testkit::service::plain(&seed.log()).contains("download triggered by the scheduler"),
        "the seed was triggered:\n{}",
        cluster.logs()
    );
}
