//! The scheduler over real gRPC on 127.0.0.1:0: a swarm that follows its
//! first origin fetcher, misbehaving peers that are refused without hurting
//! the others, and seed peers triggered for new tasks.

mod support;

use darter_common::digest::Digest;
use darter_proto::scheduler::v1::announce_peer_request::Request;
use darter_proto::scheduler::v1::announce_peer_response::Response;
use darter_proto::scheduler::v1::{self as spb, AnnouncePeerRequest};
use scheduler::Config;
use scheduler::config::SeedPeerConfig;
use support::*;
use tokio_util::sync::CancellationToken;
use tonic::Code;

const URL: &str = "http://origin.example/blobs/file.bin";
const LEN: u64 = 3 * PL;

fn origin_piece(n: u32) -> Request {
    Request::DownloadPieceBackToSourceFinished(spb::DownloadPieceBackToSourceFinishedRequest {
        piece: Some(piece(n, &piece_digest(n))),
        content_length: Some(LEN),
        piece_length: PL,
    })
}

fn spb_piece_with_digest(n: u32, digest: &str) -> darter_proto::common::v1::Piece {
    darter_proto::common::v1::Piece { digest: digest.into(), ..piece(n, &piece_digest(n)) }
}

fn peer_piece(n: u32, digest: &Digest, parent: &str) -> Request {
    Request::DownloadPieceFinished(spb::DownloadPieceFinishedRequest {
        piece: Some(piece(n, digest)),
        parent_peer_id: parent.into(),
    })
}

async fn stat_pieces(
    client: &mut spb::scheduler_client::SchedulerClient<tonic::transport::Channel>,
    peer: &str,
) -> Vec<u32> {
    let req = spb::StatPeerRequest { task_id: task_id(URL), peer_id: peer.into() };
    client.stat_peer(req).await.unwrap().into_inner().pieces
}

/// `a` (peer-a, sent to the origin) reports origin pieces 0 and 1; returns
/// once the scheduler holds them.
async fn report_two_origin_pieces(
    a: &Peer,
    client: &spb::scheduler_client::SchedulerClient<tonic::transport::Channel>,
) {
    a.send(origin_piece(0)).await;
    a.send(origin_piece(1)).await;
    eventually_some("A's origin pieces", || {
        let mut c = client.clone();
        async move { (stat_pieces(&mut c, "peer-a").await == vec![0, 1]).then_some(()) }
    })
    .await;
}

/// Peer A (host-a) registers and is sent to the origin; peer B (host-b)
/// registers and is handed A as its parent. Both hosts must be announced.
async fn a_at_the_origin_and_b_following(
    client: &mut spb::scheduler_client::SchedulerClient<tonic::transport::Channel>,
    task: &str,
) -> (Peer, Peer) {
    let mut a = Peer::open(client, "host-a", task, "peer-a").await;
    a.register(download(URL)).await;
    a.next_back_to_source().await;
    let mut b = Peer::open(client, "host-b", task, "peer-b").await;
    b.register(download(URL)).await;
    assert_eq!(b.next_normal().await.candidate_parents[0].peer_id, "peer-a");
    (a, b)
}

#[tokio::test]
async fn swarm_follows_its_origin_fetcher_and_refuses_garbage() {
    let scheduler = Scheduler::start(Config::default()).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    announce(&mut client, host("host-b", "10.0.0.2", 4000, false)).await;
    announce(&mut client, host("host-c", "10.0.0.3", 4000, false)).await;
    let task = task_id(URL);

    // A is first: no seed is configured, so it fetches from the origin.
    let mut a = Peer::open(&mut client, "host-a", &task, "peer-a").await;
    a.register(download(URL)).await;
    a.next_back_to_source().await;
    a.send(Request::DownloadPeerBackToSourceStarted(spb::DownloadPeerBackToSourceStartedRequest {
        description: "told to".into(),
    }))
    .await;
    report_two_origin_pieces(&a, &client).await;

    // B gets A as its parent, with the digests known so far.
    let mut b = Peer::open(&mut client, "host-b", &task, "peer-b").await;
    b.register(download(URL)).await;
    let normal = b.next_normal().await;
    assert_eq!(normal.candidate_parents.len(), 1);
    let parent = &normal.candidate_parents[0];
    assert_eq!((parent.peer_id.as_str(), parent.pieces.as_slice(), parent.is_seed), ("peer-a", &[0, 1][..], false));
    assert_eq!(parent.host.as_ref().unwrap().ip, "10.0.0.1");
    assert_eq!((normal.content_length, normal.piece_length, normal.concurrent_parent_limit), (Some(LEN), PL, 4));
    assert_eq!(normal.piece_digests.len(), 2);
    assert_eq!(normal.piece_digests[&1], piece_digest(1).to_string());
    b.send(Request::DownloadPeerStarted(spb::DownloadPeerStartedRequest {})).await;
    b.send(peer_piece(0, &piece_digest(0), "peer-a")).await;
    eventually_some("B's piece 0", || {
        let mut c = client.clone();
        async move { (stat_pieces(&mut c, "peer-b").await == vec![0]).then_some(()) }
    })
    .await;

    // Garbage, each on its own stream; each ends with a clear status.
    let register = |download| Request::Register(spb::RegisterPeerRequest { download, present_pieces: vec![] });

    let mut g = Peer::open(&mut client, "host-c", &task, "peer-c").await;
    g.send(Request::DownloadPeerStarted(spb::DownloadPeerStartedRequest {})).await;
    g.expect_end(Code::FailedPrecondition, "first message must be register").await;

    let mut g = Peer::open(&mut client, "host-c", &task_id("http://origin.example/other"), "peer-c").await;
    g.register(download(URL)).await;
    g.expect_end(Code::InvalidArgument, "does not match the download").await;

    let mut g = Peer::open(&mut client, "host-c", "../../etc/passwd", "peer-c").await;
    g.register(download(URL)).await;
    g.expect_end(Code::InvalidArgument, "invalid task id").await;

    let mut g = Peer::open(&mut client, "ghost", &task, "peer-ghost").await;
    g.register(download(URL)).await;
    g.expect_end(Code::FailedPrecondition, "unknown host ghost: announce it first").await;

    let mut g = Peer::open(&mut client, "host-c", &task, "peer-c").await;
    g.send_raw(AnnouncePeerRequest {
        host_id: "host-c".into(),
        task_id: task.clone(),
        peer_id: "peer-c".into(),
        request: None,
    })
    .await;
    g.expect_end(Code::InvalidArgument, "message has no request").await;

    // Registered peers that then misbehave.
    let cases: Vec<(&str, Request, Code, &str)> = vec![
        (
            "piece out of range",
            peer_piece(7, &piece_digest(7), "peer-a"),
            Code::InvalidArgument,
            "piece 7 is out of range: the task has 3 pieces",
        ),
        (
            "forged piece",
            peer_piece(1, &Digest::of(b"forged"), "peer-a"),
            Code::InvalidArgument,
            "piece 1: digest does not match the reference",
        ),
        (
            "claims a piece it never got",
            peer_piece(2, &piece_digest(2), "peer-a"),
            Code::InvalidArgument,
            "piece 2 has no reference digest yet",
        ),
        (
            "malformed digest",
            Request::DownloadPieceFinished(spb::DownloadPieceFinishedRequest {
                piece: Some(spb_piece_with_digest(1, "sha256:zz")),
                parent_peer_id: "peer-a".into(),
            }),
            Code::InvalidArgument,
            "piece 1: invalid digest",
        ),
        ("register twice", register(Some(download(URL))), Code::FailedPrecondition, "register was already received"),
        (
            "origin piece from a non-origin fetcher",
            origin_piece(2),
            Code::FailedPrecondition,
            "not fetching from the origin",
        ),
        (
            "origin completion from a non-origin fetcher",
            Request::DownloadPeerBackToSourceFinished(spb::DownloadPeerBackToSourceFinishedRequest {
                content_length: LEN,
                piece_count: 3,
                digest: Digest::of(b"all").to_string(),
            }),
            Code::FailedPrecondition,
            "not fetching from the origin",
        ),
        (
            "completion with the wrong length",
            Request::DownloadPeerFinished(spb::DownloadPeerFinishedRequest { content_length: LEN + 1, piece_count: 4 }),
            Code::InvalidArgument,
            "the task has 786432 bytes",
        ),
    ];
    for (what, request, code, text) in cases {
        let mut g = Peer::open(&mut client, "host-c", &task, "peer-c").await;
        g.register(download(URL)).await;
        let normal = g.next_normal().await;
        assert!(normal.candidate_parents.iter().any(|p| p.peer_id == "peer-a"), "{what}");
        g.send(request).await;
        let status = g.end().await;
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(status.message().contains(text), "{what}: {:?} should contain {text:?}", status.message());
    }

    // A message naming another task after register.
    let mut g = Peer::open(&mut client, "host-c", &task, "peer-c").await;
    g.register(download(URL)).await;
    g.next_normal().await;
    g.send_raw(AnnouncePeerRequest {
        host_id: "host-c".into(),
        task_id: task_id("http://origin.example/other"),
        peer_id: "peer-c".into(),
        request: Some(Request::DownloadPeerStarted(spb::DownloadPeerStartedRequest {})),
    })
    .await;
    g.expect_end(Code::InvalidArgument, "differs from the task this stream registered").await;

    // The refused peers are gone (once their streams are settled); A and B are untouched.
    eventually_some("the refused peer to be removed", || {
        let mut c = client.clone();
        let task = task.clone();
        async move {
            let e = c.stat_peer(spb::StatPeerRequest { task_id: task, peer_id: "peer-c".into() }).await.err()?;
            (e.code() == Code::NotFound).then_some(())
        }
    })
    .await;
    let info = client.stat_task(spb::StatTaskRequest { task_id: task.clone() }).await.unwrap().into_inner();
    assert_eq!((info.peer_count, info.back_to_source_count, info.piece_count), (2, 1, Some(3)));

    // A's next origin piece reaches B as a pushed digest.
    a.send(origin_piece(2)).await;
    match b.next().await {
        Response::PieceDigests(d) => {
            assert_eq!(d.piece_digests.len(), 1);
            assert_eq!(d.piece_digests[&2], piece_digest(2).to_string());
            assert_eq!(d.content_length, Some(LEN));
        }
        other => panic!("expected PieceDigests, got {other:?}"),
    }
    a.send(Request::DownloadPeerBackToSourceFinished(spb::DownloadPeerBackToSourceFinishedRequest {
        content_length: LEN,
        piece_count: 3,
        digest: Digest::of(b"whole content").to_string(),
    }))
    .await;
    a.expect_end(Code::Ok, "").await;

    b.send(peer_piece(1, &piece_digest(1), "peer-a")).await;
    b.send(peer_piece(2, &piece_digest(2), "host-a")).await;
    b.send(Request::DownloadPeerFinished(spb::DownloadPeerFinishedRequest { content_length: LEN, piece_count: 3 }))
        .await;
    b.expect_end(Code::Ok, "").await;

    // Both completed peers stay as parents for the next one.
    let info = client.stat_task(spb::StatTaskRequest { task_id: task.clone() }).await.unwrap().into_inner();
    assert_eq!((info.peer_count, info.back_to_source_count, info.succeeded_peer_count), (2, 0, 2));
    let mut c = Peer::open(&mut client, "host-c", &task, "peer-c").await;
    c.register(download(URL)).await;
    let normal = c.next_normal().await;
    let mut parents: Vec<_> = normal.candidate_parents.iter().map(|p| (p.peer_id.clone(), p.pieces.len())).collect();
    parents.sort();
    assert_eq!(parents, vec![("peer-a".to_string(), 3), ("peer-b".to_string(), 3)]);
    assert_eq!(normal.piece_digests.len(), 3);

    let metrics = scheduler.metrics().await;
    for line in [
        "scheduler_pieces_reported_total{source=\"origin\"} 3",
        "scheduler_piece_bytes_total{source=\"origin\"} 786432",
        "scheduler_rejections_total{reason=\"digest_mismatch\"} 1",
        "scheduler_rejections_total{reason=\"not_registered\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    drop(c);
    scheduler.stop().await;
}

#[tokio::test]
async fn reregistration_replaces_the_peer_and_ends_the_old_stream() {
    let scheduler = Scheduler::start(Config::default()).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    let task = task_id(URL);
    let mut first = Peer::open(&mut client, "host-a", &task, "peer-1").await;
    first.register(download(URL)).await;
    first.next_back_to_source().await;
    let mut second = Peer::open(&mut client, "host-a", &task, "peer-2").await;
    second.register(download(URL)).await;
    // The old registration no longer counts against the origin limit.
    second.next_back_to_source().await;
    first.expect_end(Code::Aborted, "replaced by a newer registration").await;
    let info = client.stat_task(spb::StatTaskRequest { task_id: task.clone() }).await.unwrap().into_inner();
    assert_eq!(info.peer_count, 1);
    // A peer that leaves is forgotten; its stream ends.
    client.leave_peer(spb::LeavePeerRequest { task_id: task.clone(), peer_id: "peer-2".into() }).await.unwrap();
    second.expect_end(Code::Aborted, "removed").await;
    scheduler.stop().await;
}

#[tokio::test]
async fn reschedules_blocklist_parents_and_are_bounded() {
    let mut config = Config::default();
    config.scheduling.max_reschedules = 2;
    let scheduler = Scheduler::start(config).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    announce(&mut client, host("host-b", "10.0.0.2", 4000, false)).await;
    let task = task_id(URL);
    let (a, mut b) = a_at_the_origin_and_b_following(&mut client, &task).await;
    let reschedule = || {
        Request::ReschedulePeer(spb::ReschedulePeerRequest {
            bad_parent_peer_ids: vec!["peer-a".into()],
            description: "stalled".into(),
        })
    };
    // A is blocklisted, but it is the only origin fetcher and the origin limit
    // is reached: B keeps getting it until its reschedules run out.
    for _ in 0..2 {
        b.send(reschedule()).await;
        assert_eq!(b.next_normal().await.candidate_parents[0].peer_id, "peer-a");
    }
    let blocked = client
        .stat_peer(spb::StatPeerRequest { task_id: task.clone(), peer_id: "peer-b".into() })
        .await
        .unwrap()
        .into_inner()
        .blocklisted_peer_ids;
    assert!(blocked.contains(&"peer-a".to_string()) && blocked.contains(&"host-a".to_string()), "{blocked:?}");
    b.send(reschedule()).await;
    b.expect_end(Code::ResourceExhausted, "too many reschedules").await;
    drop(a);
    scheduler.stop().await;
}

#[tokio::test]
async fn a_new_task_triggers_its_seed_once_and_the_seed_is_the_parent() {
    let stop = CancellationToken::new();
    let seed = FakeSeed::default();
    let seed_addr = seed.serve(stop.clone()).await;
    let config =
        Config { seed_peers: vec![SeedPeerConfig { ip: seed_addr.ip(), port: seed_addr.port() }], ..Config::default() };
    let scheduler = Scheduler::start(config).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("seed-1", "127.0.0.1", seed_addr.port(), true)).await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    announce(&mut client, host("host-b", "10.0.0.2", 4000, false)).await;
    let task = task_id(URL);

    let mut wanted = download(URL);
    wanted.request_headers.insert("Authorization".into(), "Bearer t".into());
    wanted.output_path = "/home/a/out.bin".into();
    let mut a = Peer::open(&mut client, "host-a", &task, "peer-a").await;
    a.register(wanted).await;
    let normal = a.next_normal().await;
    assert_eq!(normal.candidate_parents.len(), 1);
    let parent = &normal.candidate_parents[0];
    assert!(parent.is_seed);
    assert_eq!(parent.host.as_ref().unwrap().id, "seed-1");
    let calls = seed.calls();
    assert_eq!(calls.len(), 1, "triggered before answering");
    assert_eq!(calls[0].task_id, task);
    let sent = calls[0].download.as_ref().unwrap();
    assert_eq!((sent.url.as_str(), sent.output_path.as_str()), (URL, ""));
    assert_eq!(sent.request_headers["Authorization"], "Bearer t");

    // The next peer gets the seed too, without a second trigger.
    let mut b = Peer::open(&mut client, "host-b", &task, "peer-b").await;
    b.register(download(URL)).await;
    assert!(
        b.next_normal().await.candidate_parents.iter().any(|p| p.is_seed && p.host.as_ref().unwrap().id == "seed-1")
    );
    assert_eq!(seed.calls().len(), 1);

    // The seed's own registration replaces the placeholder and goes to the origin;
    // its pieces reach the children.
    let mut s = Peer::open(&mut client, "seed-1", &task, "seed-peer").await;
    s.register(download(URL)).await;
    s.next_back_to_source().await;
    s.send(origin_piece(0)).await;
    for child in [&mut a, &mut b] {
        match child.next().await {
            Response::PieceDigests(d) => assert_eq!(d.piece_digests[&0], piece_digest(0).to_string()),
            other => panic!("expected PieceDigests, got {other:?}"),
        }
    }
    let metrics = scheduler.metrics().await;
    assert!(metrics.contains("scheduler_decisions_total{decision=\"seed_triggered\"} 1"), "{metrics}");
    drop((a, b, s));
    scheduler.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn a_seed_that_refuses_the_trigger_sends_the_peer_to_the_origin() {
    let stop = CancellationToken::new();
    let seed = FakeSeed { refuse: true, ..Default::default() };
    let seed_addr = seed.serve(stop.clone()).await;
    let config =
        Config { seed_peers: vec![SeedPeerConfig { ip: seed_addr.ip(), port: seed_addr.port() }], ..Config::default() };
    let scheduler = Scheduler::start(config).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    let task = task_id(URL);

    // Not announced: the seed cannot be handed out, so it is not triggered.
    let mut a = Peer::open(&mut client, "host-a", &task, "peer-a").await;
    a.register(download(URL)).await;
    a.next_back_to_source().await;
    assert!(seed.calls().is_empty());
    drop(a.close());

    announce(&mut client, host("seed-1", "127.0.0.1", seed_addr.port(), true)).await;
    eventually_some("the first stream's peer to be gone", || {
        let mut c = client.clone();
        let task = task.clone();
        async move {
            let info = c.stat_task(spb::StatTaskRequest { task_id: task }).await.ok()?.into_inner();
            (info.peer_count == 0).then_some(())
        }
    })
    .await;
    let mut a = Peer::open(&mut client, "host-a", &task, "peer-a2").await;
    a.register(download(URL)).await;
    a.next_back_to_source().await;
    assert_eq!(seed.calls().len(), 1);
    let info = client.stat_task(spb::StatTaskRequest { task_id: task.clone() }).await.unwrap().into_inner();
    assert_eq!((info.peer_count, info.back_to_source_count), (1, 1), "the seed's placeholder is gone");
    drop(a);
    scheduler.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn host_announcements_are_validated_and_stats_name_unknowns() {
    let scheduler = Scheduler::start(Config::default()).await;
    let mut client = scheduler.client().await;
    for (bad, field) in [
        (host("", "10.0.0.1", 4000, false), "host.id"),
        (host("h", "not-an-ip", 4000, false), "host.ip"),
        (host("h", "10.0.0.1", 0, false), "host.port"),
    ] {
        let e = client.announce_host(spb::AnnounceHostRequest { host: Some(bad), interval_ms: 0 }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{e:?}");
    }
    let e = client.announce_host(spb::AnnounceHostRequest { host: None, interval_ms: 0 }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = client.stat_task(spb::StatTaskRequest { task_id: task_id(URL) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client.stat_task(spb::StatTaskRequest { task_id: "nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Leaving is idempotent.
    client.leave_host(spb::LeaveHostRequest { host_id: "never-seen".into() }).await.unwrap();
    scheduler.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_unavailable() {
    let scheduler = Scheduler::start(Config::default()).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    let mut a = Peer::open(&mut client, "host-a", &task_id(URL), "peer-a").await;
    a.register(download(URL)).await;
    a.next_back_to_source().await;
    // The peer keeps its side open; stopping must not wait for it.
    let stopped = tokio::spawn(scheduler.stop());
    a.expect_end(Code::Unavailable, "shutting down").await;
    tokio::time::timeout(DEADLINE, stopped).await.expect("stops in time").unwrap();
}

#[tokio::test]
async fn bytes_that_are_not_a_request_end_the_stream_with_a_status() {
    let scheduler = Scheduler::start(Config::default()).await;
    let status = announce_raw(scheduler.addr, vec![vec![0xff, 0xff, 0xff, 0x0f, 0x01]]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("unreadable request"), "{status:?}");
    // The scheduler is still fine.
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    scheduler.stop().await;
}

/// The next message that is not a digest push, or `None` within `wait`.
async fn next_non_digest(peer: &mut Peer, wait: std::time::Duration) -> Option<Response> {
    tokio::time::timeout(wait, async {
        loop {
            match peer.next().await {
                Response::PieceDigests(_) => continue,
                other => return other,
            }
        }
    })
    .await
    .ok()
}

/// A scheduler with `config`, the hosts announced, and peer A on host-a
/// fetching the task of [`URL`] from the origin, its first two pieces reported.
async fn origin_fetcher_swarm(
    config: Config,
    hosts: &[(&str, &str)],
) -> (Scheduler, spb::scheduler_client::SchedulerClient<tonic::transport::Channel>, String, Peer) {
    let scheduler = Scheduler::start(config).await;
    let mut client = scheduler.client().await;
    for (h, ip) in hosts {
        announce(&mut client, host(h, ip, 4000, false)).await;
    }
    let task = task_id(URL);
    let mut a = Peer::open(&mut client, "host-a", &task, "peer-a").await;
    a.register(download(URL)).await;
    a.next_back_to_source().await;
    report_two_origin_pieces(&a, &client).await;
    (scheduler, client, task, a)
}

#[tokio::test]
async fn a_peer_with_its_first_piece_is_introduced_to_downloading_peers() {
    for introduce_limit in [4, 0] {
        let mut config = Config::default();
        config.scheduling.introduce_limit = introduce_limit;
        // A fetches from the origin; B and C register while only A holds pieces.
        let hosts = [("host-a", "10.0.0.1"), ("host-b", "10.0.0.2"), ("host-c", "10.0.0.3")];
        let (_scheduler, mut client, task, _a) = origin_fetcher_swarm(config, &hosts).await;
        let mut b = Peer::open(&mut client, "host-b", &task, "peer-b").await;
        b.register(download(URL)).await;
        assert_eq!(b.next_normal().await.candidate_parents.len(), 1);
        let mut c = Peer::open(&mut client, "host-c", &task, "peer-c").await;
        c.register(download(URL)).await;
        let first = c.next_normal().await;
        let parents: Vec<&str> = first.candidate_parents.iter().map(|p| p.peer_id.as_str()).collect();
        assert_eq!(parents, ["peer-a"], "B holds nothing yet");

        // B verifies its first piece: C is told about B at once (when enabled).
        b.send(peer_piece(0, &piece_digest(0), "peer-a")).await;
        let pushed = next_non_digest(&mut c, std::time::Duration::from_millis(500)).await;
        if introduce_limit == 0 {
            assert!(pushed.is_none(), "introductions are off: {pushed:?}");
            continue;
        }
        let Some(Response::NormalTask(n)) = pushed else { panic!("expected an introduction, got {pushed:?}") };
        assert_eq!(n.candidate_parents.len(), 1);
        let parent = &n.candidate_parents[0];
        assert_eq!((parent.peer_id.as_str(), parent.pieces.as_slice(), parent.is_seed), ("peer-b", &[0][..], false));
        assert_eq!(parent.host.as_ref().unwrap().ip, "10.0.0.2");
        assert_eq!((n.content_length, n.piece_length), (Some(LEN), PL));
        assert!(n.piece_digests.is_empty(), "digests travel as pushes, not with every introduction");
        // Only the first piece introduces: B's second piece pushes no parent.
        b.send(peer_piece(1, &piece_digest(1), "peer-a")).await;
        let again = next_non_digest(&mut c, std::time::Duration::from_millis(300)).await;
        assert!(again.is_none(), "a second introduction: {again:?}");
        // And C, once it holds a piece, may be B's parent too (no DAG rule).
        b.send(Request::ReschedulePeer(spb::ReschedulePeerRequest {
            bad_parent_peer_ids: vec![],
            description: "more parents".into(),
        }))
        .await;
        let _ = b.next_normal().await;
        c.send(peer_piece(0, &piece_digest(0), "peer-a")).await;
        let Some(Response::NormalTask(n)) = next_non_digest(&mut b, std::time::Duration::from_secs(2)).await else {
            panic!("B should be introduced to C")
        };
        assert_eq!(n.candidate_parents[0].peer_id, "peer-c");
    }
}

#[tokio::test]
async fn a_peer_that_completes_is_introduced_to_downloaders_it_is_not_a_parent_of() {
    let mut config = Config::default();
    config.scheduling.introduce_limit = 1;
    let hosts = [("host-a", "10.0.0.1"), ("host-b", "10.0.0.2"), ("host-c", "10.0.0.3"), ("host-d", "10.0.0.4")];
    let (scheduler, mut client, task, a) = origin_fetcher_swarm(config, &hosts).await;
    a.send(origin_piece(2)).await;
    let mut peers = Vec::new();
    for (h, id) in [("host-b", "peer-b"), ("host-c", "peer-c"), ("host-d", "peer-d")] {
        let mut p = Peer::open(&mut client, h, &task, id).await;
        p.register(download(URL)).await;
        let _ = p.next_normal().await;
        peers.push(p);
    }
    let (b, mut d, mut c) = (peers.remove(0), peers.pop().unwrap(), peers.pop().unwrap());
    // B's first piece introduces it to one of C and D (the limit is 1).
    for n in 0..3 {
        b.send(peer_piece(n, &piece_digest(n), "peer-a")).await;
    }
    let wait = std::time::Duration::from_millis(500);
    let (to_c, to_d) = (next_non_digest(&mut c, wait).await, next_non_digest(&mut d, wait).await);
    assert!(to_c.is_some() != to_d.is_some(), "one introduction: {to_c:?} {to_d:?}");
    let mut other = if to_c.is_some() { d } else { c };
    // B completes: the downloader that does not have it yet is pushed B, complete.
    b.send(Request::DownloadPeerFinished(spb::DownloadPeerFinishedRequest { content_length: LEN, piece_count: 3 }))
        .await;
    let Some(Response::NormalTask(n)) = next_non_digest(&mut other, std::time::Duration::from_secs(2)).await else {
        panic!("the downloader without B should be pushed B as a complete parent")
    };
    let parent = &n.candidate_parents[0];
    assert_eq!((parent.peer_id.as_str(), parent.pieces.as_slice()), ("peer-b", &[0, 1, 2][..]));
    scheduler.stop().await;
}

/// An origin fetcher whose digest conflicts with the reference is
/// blocklisted for the task: its stream ends saying so, and the next peer
/// is handed only the fetcher that set the reference.
#[tokio::test]
async fn a_conflicting_origin_report_blocklists_its_sender() {
    let mut config = Config::default();
    config.scheduling.back_to_source_limit = 2;
    let scheduler = Scheduler::start(config).await;
    let mut client = scheduler.client().await;
    for (name, ip) in [("host-a", "10.0.0.1"), ("host-b", "10.0.0.2"), ("host-c", "10.0.0.3")] {
        announce(&mut client, host(name, ip, 4000, false)).await;
    }
    let task = task_id(URL);
    let (a, mut b) = a_at_the_origin_and_b_following(&mut client, &task).await;
    // B gives up on A; the origin limit (2) lets it fetch from the origin too.
    b.send(Request::ReschedulePeer(spb::ReschedulePeerRequest {
        bad_parent_peer_ids: vec!["peer-a".into()],
        description: "stalled".into(),
    }))
    .await;
    b.next_back_to_source().await;

    report_two_origin_pieces(&a, &client).await;
    let lie = Digest::of(b"not what the origin served");
    b.send(Request::DownloadPieceBackToSourceFinished(spb::DownloadPieceBackToSourceFinishedRequest {
        piece: Some(piece(0, &lie)),
        content_length: Some(LEN),
        piece_length: PL,
    }))
    .await;
    b.expect_end(Code::InvalidArgument, "conflicts with the reference").await;

    let mut c = Peer::open(&mut client, "host-c", &task, "peer-c").await;
    c.register(download(URL)).await;
    let normal = c.next_normal().await;
    let parents: Vec<&str> = normal.candidate_parents.iter().map(|p| p.peer_id.as_str()).collect();
    assert_eq!(parents, ["peer-a"], "the blocklisted host is nobody's parent");
    assert_eq!(normal.piece_digests[&0], piece_digest(0).to_string(), "the reference stands");

    // Back on a new stream, host-b's claims count for nothing.
    let mut b = Peer::open(&mut client, "host-b", &task, "peer-b2").await;
    b.send(Request::Register(spb::RegisterPeerRequest { download: Some(download(URL)), present_pieces: vec![0, 1] }))
        .await;
    b.next_normal().await;
    assert!(stat_pieces(&mut client, "peer-b2").await.is_empty(), "no pieces taken on its word");
}
