//! What one request or one host may make the scheduler hold (`limits:`),
//! over real gRPC on 127.0.0.1:0: oversized downloads are refused at
//! `register` and never kept, one host's downloads and created tasks are
//! capped, and the refusal says which limit.

mod support;

use darter_proto::scheduler::v1 as spb;
use scheduler::Config;
use support::*;
use tonic::Code;

fn url(n: usize) -> String {
    format!("http://origin.example/file-{n}")
}

/// The reason carried by a status.
fn reason(s: &tonic::Status) -> Option<darter_common::status::Reason> {
    darter_common::status::reason(s)
}

#[tokio::test]
async fn an_oversized_download_is_refused_at_register_and_not_kept() {
    let scheduler = Scheduler::start(Config::default()).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;

    // A signed URL of 64 KiB: 8 times the default limit (and cheap to send).
    let long = format!("http://origin.example/f?X-Amz-Signature={}", "s".repeat(64 * 1024));
    let mut p = Peer::open(&mut client, "host-a", &task_id(&long), "peer-a").await;
    p.register(download(&long)).await;
    let status = p.end().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("more than the limit of 8192 bytes (limits.max_url_bytes)"), "{status:?}");
    assert!(!status.message().contains("sss"), "the URL is not echoed: {status:?}");
    let e = client.stat_task(spb::StatTaskRequest { task_id: task_id(&long) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "nothing of it is held: {e:?}");

    let mut headers = download(&url(0));
    headers.request_headers = (0..33).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
    let mut p = Peer::open(&mut client, "host-a", &task_id(&url(0)), "peer-a").await;
    p.register(headers).await;
    p.expect_end(Code::InvalidArgument, "33 request headers, more than the limit of 32 (limits.max_header_count)")
        .await;
    scheduler.stop().await;
}

#[tokio::test]
async fn one_host_holds_at_most_its_limit_of_downloads_at_once() {
    let mut config = Config::default();
    config.limits.max_peers_per_host = 2;
    let scheduler = Scheduler::start(config).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;
    announce(&mut client, host("host-b", "10.0.0.2", 4000, false)).await;

    let mut open = Vec::new();
    for n in 0..2 {
        let mut p = Peer::open(&mut client, "host-a", &task_id(&url(n)), &format!("peer-a{n}")).await;
        p.register(download(&url(n))).await;
        p.next_back_to_source().await;
        open.push(p);
    }
    let mut third = Peer::open(&mut client, "host-a", &task_id(&url(2)), "peer-a2").await;
    third.register(download(&url(2))).await;
    let status = third.end().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), Some(darter_common::status::Reason::LimitExceeded));
    assert!(
        status.message().contains("host host-a already has 2 downloads registered")
            && status.message().contains("limits.max_peers_per_host"),
        "{status:?}"
    );
    // Another host is not held to host-a's count.
    let mut b = Peer::open(&mut client, "host-b", &task_id(&url(2)), "peer-b").await;
    b.register(download(&url(2))).await;
    b.next_back_to_source().await;

    // Once one of host-a's downloads ends, it may start another.
    drop(open.pop());
    eventually_some("host-a to register again", || {
        let mut c = client.clone();
        async move {
            let p = Peer::open(&mut c, "host-a", &task_id(&url(3)), "peer-a3").await;
            p.register(download(&url(3))).await;
            match tokio::time::timeout(DEADLINE, p.close().message()).await.ok()? {
                Ok(Some(_)) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    scheduler.stop().await;
}

#[tokio::test]
async fn one_host_creates_at_most_its_limit_of_tasks_and_idle_ones_make_room() {
    let mut config = Config::default();
    config.limits.max_tasks_per_host = 2;
    let scheduler = Scheduler::start(config).await;
    let mut client = scheduler.client().await;
    announce(&mut client, host("host-a", "10.0.0.1", 4000, false)).await;

    let mut open = Vec::new();
    for n in 0..2 {
        let mut p = Peer::open(&mut client, "host-a", &task_id(&url(n)), &format!("peer-a{n}")).await;
        p.register(download(&url(n))).await;
        p.next_back_to_source().await;
        open.push(p);
    }
    // Both of its tasks are downloading: a third is refused.
    let mut third = Peer::open(&mut client, "host-a", &task_id(&url(2)), "peer-a2").await;
    third.register(download(&url(2))).await;
    let status = third.end().await;
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::ResourceExhausted, Some(darter_common::status::Reason::LimitExceeded))
    );
    assert!(status.message().contains("limits.max_tasks_per_host"), "{status:?}");
    let e = client.stat_task(spb::StatTaskRequest { task_id: task_id(&url(2)) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Its first download goes away: that task has nothing downloading and
    // gives its place to the next one.
    drop(open.remove(0));
    eventually_some("the first task to be idle and make room", || {
        let mut c = client.clone();
        async move {
            let p = Peer::open(&mut c, "host-a", &task_id(&url(2)), "peer-a2").await;
            p.register(download(&url(2))).await;
            match tokio::time::timeout(DEADLINE, p.close().message()).await.ok()? {
                Ok(Some(_)) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    let e = client.stat_task(spb::StatTaskRequest { task_id: task_id(&url(0)) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "the idle task was dropped");
    client.stat_task(spb::StatTaskRequest { task_id: task_id(&url(1)) }).await.expect("the downloading one stays");
    scheduler.stop().await;
}
