//! A cluster's config, edited at the manager, takes effect in its scheduler
//! without a restart (issue 15): after `PUT /api/v1/clusters/{id}/config`
//! with `candidate_parent_limit: 1`, the scheduler hands a registering peer
//! one parent where it handed three, within a few of its refresh intervals.

use std::time::Duration;

use darter_common::task_id::TaskId;
use darter_common::tls::{Expect, Role, Transport, connect};
use darter_proto::common::v1 as cpb;
use darter_proto::scheduler::v1 as spb;
use darter_proto::scheduler::v1::announce_peer_response::Response;
use darter_proto::scheduler::v1::scheduler_client::SchedulerClient;
use testkit::cluster::{Cluster, ClusterOptions};
use testkit::dfdaemon::bin_dir;
use testkit::eventually::poll;
use testkit::origin::{Behavior, Content, Origin};
use testkit::pki;
use testkit::{random_bytes, sha256_file, sha256_hex};
use tokio_stream::wrappers::ReceiverStream;

const MIB: usize = 1 << 20;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The candidate parents the scheduler at `addr` hands a new peer of `url`
/// on host `host` (announced first), over a stream of its own.
async fn candidates(transport: &Transport, addr: std::net::SocketAddr, host: &str, url: &str, n: u32) -> Vec<String> {
    let endpoint = connect::endpoint(&addr.to_string()).unwrap().connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT);
    let mut client = SchedulerClient::new(transport.channel(endpoint, Expect::scheduler(pki::CLUSTER)));
    let host_id = format!("{host}-127.0.0.1-1");
    let info = cpb::Host {
        id: host_id.clone(),
        hostname: host.into(),
        ip: "127.0.0.1".into(),
        port: 1,
        download_port: 1,
        r#type: cpb::HostType::Normal as i32,
        ..Default::default()
    };
    client.announce_host(spb::AnnounceHostRequest { host: Some(info), interval_ms: 60_000 }).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let download = cpb::Download { url: url.into(), ..Default::default() };
    let register = spb::AnnouncePeerRequest {
        host_id,
        task_id: TaskId::for_download(url, None, "", "").unwrap().to_string(),
        peer_id: format!("{host}-probe-{n}"),
        request: Some(spb::announce_peer_request::Request::Register(spb::RegisterPeerRequest {
            download: Some(download),
            present_pieces: Vec::new(),
        })),
    };
    tx.send(register).await.unwrap();
    let mut answers = client.announce_peer(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    drop(tx);
    match answer.response {
        Some(Response::NormalTask(n)) => n.candidate_parents.into_iter().map(|c| c.peer_id).collect(),
        other => panic!("expected parents, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clusters_candidate_parent_limit_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&ClusterOptions::new(dir.path(), &bin_dir(), 2).with_manager()).await.unwrap();
    let manager = cluster.manager.as_ref().expect("a manager");
    let origin = Origin::start().await;
    let data = random_bytes(4 * MIB, 151);
    origin.add("/blob", Content::Bytes(data.clone()), Behavior::default());
    let url = origin.url("/blob");
    for (i, peer) in cluster.peers.iter().enumerate() {
        let out = dir.path().join(format!("out-{i}"));
        let r = peer.dfget(&url, &out, &["--timeout", "2m"]).await;
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, cluster.logs());
        assert_eq!(sha256_file(&out).unwrap(), sha256_hex(&data));
    }
    let prober = manager.enroll(Role::Peer, "prober").await.unwrap();
    let before = candidates(&prober, cluster.scheduler.addr, "prober", &url, 0).await;
    assert_eq!(before.len(), 3, "the seed and both peers: {before:?}");

    let config = serde_json::json!({ "candidate_parent_limit": 1, "back_to_source_limit": 1, "load_limit": 32 });
    let (status, body) =
        manager.rest("PUT", &format!("/api/v1/clusters/{}/config", pki::CLUSTER), Some(&config)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let mut n = 0;
    let after = poll("the scheduler to hand out one parent", Duration::from_secs(20), || {
        n += 1;
        let (prober, addr, url) = (&prober, cluster.scheduler.addr, url.clone());
        async move {
            let got = candidates(prober, addr, "prober", &url, n).await;
            (got.len() == 1).then_some(got)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert!(before.contains(&after[0]), "{after:?} is one of {before:?}");
    let log = testkit::service::plain(&cluster.scheduler.log_tail(1000));
    assert!(log.contains("the cluster's config from the manager is in force"), "the scheduler says so:\n{log}");
}
