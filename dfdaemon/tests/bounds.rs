//! What peers and origins may make a dfdaemon process hold (issue 14,
//! attacks 6 and 9), against the real binary: a parent announcing piece
//! 4294967295 (the memory bomb), an origin that never says its length, an
//! oversized request.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use darter_proto::common::v1 as pb;
use darter_proto::dfdaemon::v1 as dpb;
use darter_proto::dfdaemon::v1::dfdaemon_upload_server::{DfdaemonUpload, DfdaemonUploadServer};
use darter_proto::scheduler::v1 as spb;
use darter_proto::scheduler::v1::announce_peer_request::Request as Req;
use darter_proto::scheduler::v1::announce_peer_response::Response as Resp;
use darter_proto::scheduler::v1::scheduler_server::{Scheduler, SchedulerServer};
use support::Daemon;
use testkit::data::{random_bytes, sha256_hex};
use testkit::eventually::eventually;
use testkit::origin::{Behavior, Content, Origin};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Serves a gRPC service on 127.0.0.1:0 until `stop`.
async fn serve<S>(svc: S, stop: CancellationToken) -> SocketAddr
where
    S: tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder().add_service(svc);
    tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned()));
    addr
}

/// A parent that announces one piece number and holds its `SyncPieces`
/// stream open until the child lets go of it.
#[derive(Clone)]
struct LyingParent {
    piece: u32,
    sent: Arc<AtomicBool>,
    let_go: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl DfdaemonUpload for LyingParent {
    type SyncPiecesStream = ReceiverStream<Result<dpb::SyncPiecesResponse, Status>>;

    async fn sync_pieces(
        &self,
        _request: Request<dpb::SyncPiecesRequest>,
    ) -> Result<Response<Self::SyncPiecesStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            let msg = dpb::SyncPiecesResponse {
                numbers: vec![this.piece],
                content_length: None,
                piece_length: 0,
                complete: false,
                ..Default::default()
            };
            if tx.send(Ok(msg)).await.is_ok() {
                this.sent.store(true, Ordering::SeqCst);
            }
            tx.closed().await;
            this.let_go.store(true, Ordering::SeqCst);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn trigger_download_task(
        &self,
        _r: Request<dpb::TriggerDownloadTaskRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("lying parent"))
    }

    async fn stat_task(&self, _r: Request<dpb::StatTaskRequest>) -> Result<Response<dpb::TaskInfo>, Status> {
        Err(Status::unimplemented("lying parent"))
    }
}

/// A scheduler that hands every download the lying parent, with the task's
/// geometry or without it, and sends it to the origin when it asks for
/// other parents.
#[derive(Clone)]
struct OneParentScheduler {
    parent: SocketAddr,
    geometry: Option<(u64, u64)>,
    messages: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl Scheduler for OneParentScheduler {
    async fn announce_host(&self, _r: Request<spb::AnnounceHostRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn leave_host(&self, _r: Request<spb::LeaveHostRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    type AnnouncePeerStream = ReceiverStream<Result<spb::AnnouncePeerResponse, Status>>;

    async fn announce_peer(
        &self,
        request: Request<Streaming<spb::AnnouncePeerRequest>>,
    ) -> Result<Response<Self::AnnouncePeerStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                let Some(request) = msg.request else { continue };
                let kind = format!("{request:?}").split('(').next().unwrap_or_default().to_string();
                this.messages.lock().unwrap().push(kind);
                let answer = match request {
                    Req::Register(_) => Resp::NormalTask(spb::NormalTaskResponse {
                        candidate_parents: vec![spb::CandidateParent {
                            peer_id: "liar".into(),
                            host: Some(pb::Host {
                                id: "liar-host".into(),
                                ip: "127.0.0.1".into(),
                                port: this.parent.port().into(),
                                download_port: this.parent.port().into(),
                                ..Default::default()
                            }),
                            pieces: vec![],
                            is_seed: false,
                            grant: String::new(),
                        }],
                        content_length: this.geometry.map(|g| g.0),
                        piece_length: this.geometry.map_or(0, |g| g.1),
                        piece_digests: Default::default(),
                        concurrent_parent_limit: 4,
                    }),
                    Req::ReschedulePeer(_) => {
                        Resp::NeedBackToSource(spb::NeedBackToSourceResponse { description: "no other parent".into() })
                    }
                    _ => continue,
                };
                if tx.send(Ok(spb::AnnouncePeerResponse { response: Some(answer) })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stat_peer(&self, _r: Request<spb::StatPeerRequest>) -> Result<Response<spb::PeerInfo>, Status> {
        Err(Status::unimplemented("fake scheduler"))
    }

    async fn leave_peer(&self, _r: Request<spb::LeavePeerRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn stat_task(&self, _r: Request<spb::StatTaskRequest>) -> Result<Response<spb::TaskInfo>, Status> {
        Err(Status::unimplemented("fake scheduler"))
    }
}

/// `text` without terminal colour codes (the log colours field names).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The most the daemon may have resident at its peak in this test (it
/// peaks near 30 MiB, a 4 MiB download included). A parent's piece set is
/// at most `p2p.max_piece_count / 8` bytes (128 KiB by default) whatever it
/// announces; before the bound, piece 4294967295 made the child allocate and
/// zero a 512 MiB bit vector (peak 539 MiB).
const PEAK_RSS_BOUND: u64 = 128 << 20;

async fn a_parent_announcing_piece_4294967295(geometry_known: bool) {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let parent = LyingParent { piece: u32::MAX, sent: Arc::default(), let_go: Arc::default() };
    let parent_addr = serve(DfdaemonUploadServer::new(parent.clone()), stop.clone()).await;
    let len = 4u64 << 20;
    let scheduler = OneParentScheduler {
        parent: parent_addr,
        geometry: geometry_known.then_some((len, 256 << 10)),
        messages: Arc::default(),
    };
    let scheduler_addr = serve(SchedulerServer::new(scheduler.clone()), stop.clone()).await;
    let origin = Origin::start().await;
    let data = random_bytes(len as usize, 61);
    origin.add("/f", Content::Bytes(data.clone()), Behavior::default());
    let addr = scheduler_addr.to_string();
    let daemon = Daemon::start(dir.path(), &[("DFDAEMON__SCHEDULER__ADDRS", &format!("[{addr}]"))]).await;

    let out = dir.path().join("f");
    let r = daemon.dfget(&origin.url("/f"), &out, &["--timeout", "2m"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, daemon.process.log_tail(30));
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sha256_hex(&data), "the download completed from the origin");
    assert!(parent.sent.load(Ordering::SeqCst), "the parent's announcement reached the child");
    eventually("the child to let go of the lying parent", || async { parent.let_go.load(Ordering::SeqCst) }).await;
    let peak = peak_rss(daemon.process.pid().unwrap());
    assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB (bound {} MiB)", peak >> 20, PEAK_RSS_BOUND >> 20);
    let log = plain(&daemon.log());
    assert!(
        log.contains("parent announced a piece past the end of the task; dropping it")
            && log.contains("piece=4294967295"),
        "the refusal is logged clearly:\n{}",
        daemon.process.log_tail(30)
    );
    let pieces = if geometry_known { "pieces=16" } else { "pieces=1048576" };
    assert!(log.contains(pieces), "bounded by {pieces}:\n{}", daemon.process.log_tail(30));
    let asked = scheduler.messages.lock().unwrap().clone();
    assert!(asked.iter().any(|m| m == "ReschedulePeer"), "the child asked for other parents: {asked:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_announcing_piece_4294967295_is_dropped_and_allocates_nothing() {
    a_parent_announcing_piece_4294967295(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn before_the_piece_count_is_known_numbers_are_held_to_the_configured_most() {
    a_parent_announcing_piece_4294967295(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_without_a_length_is_cut_off_at_max_content_length() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[("DFDAEMON__BACK_TO_SOURCE__MAX_CONTENT_LENGTH", "6MiB")]).await;
    let streamed = Behavior { ignore_range: true, no_content_length: true, ..Default::default() };
    origin.add("/endless", Content::Bytes(random_bytes(16 << 20, 62)), streamed.clone());
    let out = dir.path().join("endless");
    let r = daemon.dfget(&origin.url("/endless"), &out, &[]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("limit exceeded: the origin sent more than 6MiB without saying its length (back_to_source.max_content_length)"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "no output");
    // Nothing half-complete stays: no task in storage, no task directory.
    let tasks = dir.path().join("data/tasks");
    eventually("the partial task to be removed", || async {
        std::fs::read_dir(&tasks).map(|d| d.count() == 0).unwrap_or(false)
    })
    .await;
    // Content under the limit streams as before.
    let small = random_bytes(5 << 20, 63);
    origin.add("/small", Content::Bytes(small.clone()), streamed);
    let r = daemon.dfget(&origin.url("/small"), &dir.path().join("small"), &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(dir.path().join("small")).unwrap(), small);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_is_refused_before_anything_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    origin.add("/f", Content::Bytes(random_bytes(1024, 64)), Behavior::default());
    let long = format!("{}?X-Amz-Signature={}", origin.url("/f"), "s".repeat(9000));
    let r = daemon.dfget(&long, &dir.path().join("f"), &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("more than the limit of 8192 bytes (download.max_url_bytes)"), "{}", r.stderr);
    assert!(!r.stderr.contains("ssss"), "the URL is not echoed: {}", r.stderr);
    let headers: Vec<String> = (0..33).flat_map(|i| ["-H".to_string(), format!("X-H{i}: v")]).collect();
    let args: Vec<&str> = headers.iter().map(String::as_str).collect();
    let r = daemon.dfget(&origin.url("/f"), &dir.path().join("f"), &args).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("(download.max_header_count)"), "{}", r.stderr);
    assert_eq!(origin.stats("/f").requests, 0, "the origin was never asked");
}
