//! The BitTorrent baseline of the swarm benchmark on its own: three
//! leechers in network namespaces on shaped links fetch a 16 MiB file from
//! a seeder through an opentracker, every copy is checked, and the seeder's
//! link shows the leechers shared pieces among themselves.
//!
//! Needs root (namespaces) and aria2, mktorrent and opentracker (Debian
//! packages); without them the test prints SKIPPED and passes, except under
//! CI (`CI` set), where it fails.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use darter_bench::swarm::bittorrent::{self, BtRun};
use darter_bench::swarm::netns::{LinkRates, Topology};
use testkit::write_random_file;

const MIB: u64 = 1 << 20;

/// `true` when the baseline can run here; otherwise prints `SKIPPED` and
/// returns `false`, or panics under CI.
fn ready_or_skip(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    let why = if root { bittorrent::ready().err() } else { Some("network namespaces need root".to_string()) };
    match why {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => panic!("{test}: {why}, and CI must not skip it"),
        Some(why) => {
            println!("SKIPPED {test}: {why}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_leechers_complete_and_share_pieces_among_themselves() {
    if !ready_or_skip("three_leechers_complete_and_share_pieces_among_themselves") {
        return;
    }
    let rates = LinkRates { origin_up_bps: 100_000_000, peer_up_bps: 50_000_000, peer_down_bps: 100_000_000 };
    let topology = Topology::namespaces(3, &rates).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let size = 16 * MIB;
    let file = dir.path().join("content.bin");
    let expected = write_random_file(&file, size, 7).unwrap();
    let scratch = dir.path().join("bt");

    let origin_before = topology.origin.link_bytes().unwrap();
    let peers_before: Vec<_> = topology.peers.iter().map(|p| p.link_bytes().unwrap()).collect();
    let run = BtRun {
        tracker: &topology.hub,
        seeder: &topology.origin,
        peers: &topology.peers,
        file: &file,
        piece_length: 256 << 10,
        dir: &scratch,
        timeout: Duration::from_secs(120),
    };
    let mut started = Vec::new();
    let outcome = bittorrent::run(&run, |pids| started = pids.to_vec()).await.unwrap();
    let origin_sent = topology.origin.link_bytes().unwrap().sent - origin_before.sent;
    let peers_sent: Vec<u64> = topology
        .peers
        .iter()
        .zip(&peers_before)
        .map(|(p, before)| p.link_bytes().unwrap().sent - before.sent)
        .collect();

    println!("completion: {:?}", outcome.completion);
    println!("origin sent {:.2} copies ({origin_sent} bytes)", origin_sent as f64 / size as f64);
    println!("peers sent: {peers_sent:?} bytes");
    assert!(outcome.errors.is_empty(), "errors: {:#?}", outcome.errors);
    assert_eq!(started, outcome.pids, "on_start saw the leechers' pids");
    assert_eq!(outcome.pids.len(), 3);
    for (i, (done, sha)) in outcome.completion.iter().zip(&outcome.sha256).enumerate() {
        assert!(done.is_some(), "peer-{i} did not complete");
        assert_eq!(sha.as_deref(), Some(expected.as_str()), "peer-{i}'s file");
    }
    // Three copies would mean the leechers only fetched from the seeder;
    // link bytes include headers (~3%).
    assert!(
        (origin_sent as f64) < 2.5 * size as f64,
        "the seeder sent {origin_sent} bytes, {:.2} copies: the leechers hardly shared",
        origin_sent as f64 / size as f64
    );
    assert!(peers_sent.iter().sum::<u64>() > size / 2, "the leechers uploaded only {peers_sent:?} bytes");
}
