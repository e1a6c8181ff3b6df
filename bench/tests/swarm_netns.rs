//! Darter on the swarm benchmark's network: the real binaries (manager,
//! scheduler, seed peer, four dfdaemons) in network namespaces on links
//! shaped like profile A, a cold flash crowd of a 16 MiB file. Every copy is
//! checked, the origin serves it once, and the peers fetch from each other:
//! the origin node's link (the seed's uploads) carries far fewer than four
//! copies, which it would not without the scheduler's introductions.
//!
//! Needs root (namespaces) and the release or debug binaries next to the
//! test; without root the test prints SKIPPED and passes, except under CI
//! (`CI` set), where it fails.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use darter_bench::swarm::bench::{BenchConfig, run};
use darter_bench::swarm::profile::Profile;
use darter_bench::swarm::scenario::Scenario;
use testkit::dfdaemon::sibling_binary;

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_flash_crowd_in_namespaces_shares_and_costs_the_origin_one_copy() {
    let test = "a_cold_flash_crowd_in_namespaces_shares_and_costs_the_origin_one_copy";
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if !root {
        assert!(std::env::var_os("CI").is_none(), "{test}: network namespaces need root, and CI must not skip it");
        println!("SKIPPED {test}: network namespaces need root");
        return;
    }
    let bin_dir = sibling_binary("dfdaemon").unwrap().parent().unwrap().to_path_buf();
    let out = tempfile::tempdir().unwrap();
    let mut profile = Profile::named("A").unwrap();
    profile.size = 16 << 20;
    let config = BenchConfig {
        profiles: vec![profile],
        peers: vec![4],
        scenarios: vec![Scenario::Cold],
        baselines: vec![],
        curl_max_peers: None,
        out: out.path().to_path_buf(),
        bin_dir,
        timeout: Duration::from_secs(120),
        loopback: false,
        calibrate: Duration::from_secs(1),
        daemon_env: vec![],
        scheduler_env: vec![],
        plaintext: false,
    };
    let runs = run(&config).await.unwrap();
    let cold = &runs[0];
    println!("{}", darter_bench::swarm::result::markdown(&runs));
    assert_eq!(cold.failures(), 0, "{:?}", cold.per_peer);
    assert!(cold.makespan.is_some());
    assert!(cold.origin_copies() <= 1.05, "origin served {:.2} copies", cold.origin_copies());
    assert!(!cold.notes.iter().any(|n| n.contains("loopback")), "namespaces were not made: {:?}", cold.notes);
    let seed_copies = cold.origin_link_copies().expect("the origin node's link is counted in namespaces");
    assert!(seed_copies < 2.5, "the seed uploaded {seed_copies:.2} copies to 4 peers: they did not share");
    assert!(out.path().join("summary.md").is_file() && out.path().join("swarm-A.png").is_file());
}
