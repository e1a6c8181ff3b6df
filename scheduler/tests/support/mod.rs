//! In-process scheduler on 127.0.0.1:0, announce-stream helpers, and a fake
//! seed peer that records download triggers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use darter_common::digest::Digest;
use darter_common::task_id::TaskId;
use darter_proto::common::v1 as pb;
use darter_proto::dfdaemon::v1 as dpb;
use darter_proto::dfdaemon::v1::dfdaemon_upload_server::{DfdaemonUpload, DfdaemonUploadServer};
use darter_proto::scheduler::v1::announce_peer_request::Request;
use darter_proto::scheduler::v1::announce_peer_response::Response;
use darter_proto::scheduler::v1::scheduler_client::SchedulerClient;
use darter_proto::scheduler::v1::{self as spb, AnnouncePeerRequest, AnnouncePeerResponse};
use scheduler::{Config, Listeners};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

pub use testkit::eventually::{DEADLINE, eventually_some};
/// Piece length used by the tests (the smallest allowed).
pub const PL: u64 = 262_144;

/// A scheduler running in this process.
pub struct Scheduler {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Scheduler {
    /// Starts `config`; a config that says nothing about TLS runs in
    /// plaintext (development) mode, so the tests' plain clients and fakes
    /// reach it (the trust tests give it certificates).
    pub async fn start(mut config: Config) -> Self {
        if config.tls == darter_common::tls::TlsConfig::default() {
            config.tls.mode = darter_common::tls::TlsMode::Plaintext;
        }
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, metrics_addr) = (grpc.local_addr().unwrap(), metrics.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(scheduler::run(config, Listeners { grpc, metrics }, shutdown.clone()));
        Self { addr, metrics_addr, shutdown, handle }
    }

    pub async fn client(&self) -> SchedulerClient<Channel> {
        SchedulerClient::connect(format!("http://{}", self.addr)).await.unwrap()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        testkit::metrics::scrape(self.metrics_addr).await.unwrap()
    }

    /// Stops the scheduler and checks it drained cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.handle).await.expect("scheduler stops in time").unwrap().unwrap();
    }
}

pub fn host(id: &str, ip: &str, port: u16, seed: bool) -> pb::Host {
    let kind = if seed { pb::HostType::Seed } else { pb::HostType::Normal };
    pb::Host {
        id: id.into(),
        hostname: id.into(),
        ip: ip.into(),
        port: port.into(),
        download_port: 4003,
        r#type: kind as i32,
        network: Some(pb::Network { upload_slots: 8, ..Default::default() }),
        ..Default::default()
    }
}

pub async fn announce(client: &mut SchedulerClient<Channel>, host: pb::Host) {
    client.announce_host(spb::AnnounceHostRequest { host: Some(host), interval_ms: 30_000 }).await.unwrap();
}

pub fn download(url: &str) -> pb::Download {
    pb::Download { url: url.into(), ..Default::default() }
}

pub fn task_id(url: &str) -> String {
    TaskId::for_download(url, None, "", "").unwrap().to_string()
}

pub fn piece_digest(n: u32) -> Digest {
    Digest::of(format!("piece {n}").as_bytes())
}

pub fn piece(n: u32, digest: &Digest) -> pb::Piece {
    pb::Piece { number: n, offset: n as u64 * PL, length: PL, digest: digest.to_string(), ..Default::default() }
}

/// One announce stream, as a peer holds it.
pub struct Peer {
    pub host_id: String,
    pub task_id: String,
    pub peer_id: String,
    tx: mpsc::Sender<AnnouncePeerRequest>,
    rx: Streaming<AnnouncePeerResponse>,
}

impl Peer {
    pub async fn open(client: &mut SchedulerClient<Channel>, host_id: &str, task_id: &str, peer_id: &str) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let rx = client.announce_peer(ReceiverStream::new(rx)).await.unwrap().into_inner();
        Self { host_id: host_id.into(), task_id: task_id.into(), peer_id: peer_id.into(), tx, rx }
    }

    pub async fn send(&self, request: Request) {
        let message = AnnouncePeerRequest {
            host_id: self.host_id.clone(),
            task_id: self.task_id.clone(),
            peer_id: self.peer_id.clone(),
            request: Some(request),
        };
        self.tx.send(message).await.unwrap();
    }

    pub async fn send_raw(&self, message: AnnouncePeerRequest) {
        self.tx.send(message).await.unwrap();
    }

    pub async fn register(&self, download: pb::Download) {
        self.send(Request::Register(spb::RegisterPeerRequest { download: Some(download), present_pieces: vec![] }))
            .await;
    }

    /// The next response; fails the test on an error status or the end of the stream.
    pub async fn next(&mut self) -> Response {
        match tokio::time::timeout(DEADLINE, self.rx.message()).await.expect("a response in time") {
            Ok(Some(m)) => m.response.expect("a response body"),
            Ok(None) => panic!("stream of {} ended", self.host_id),
            Err(s) => panic!("stream of {} failed: {s:?}", self.host_id),
        }
    }

    pub async fn next_normal(&mut self) -> spb::NormalTaskResponse {
        match self.next().await {
            Response::NormalTask(n) => n,
            other => panic!("expected NormalTask, got {other:?}"),
        }
    }

    pub async fn next_back_to_source(&mut self) -> spb::NeedBackToSourceResponse {
        match self.next().await {
            Response::NeedBackToSource(n) => n,
            other => panic!("expected NeedBackToSource, got {other:?}"),
        }
    }

    /// Waits for the stream's final status (skipping pushed digests); `Ok` ends map to `Code::Ok`.
    pub async fn end(&mut self) -> Status {
        loop {
            match tokio::time::timeout(DEADLINE, self.rx.message()).await.expect("the stream ends in time") {
                Ok(Some(AnnouncePeerResponse { response: Some(Response::PieceDigests(_)) })) => continue,
                Ok(Some(m)) => panic!("expected the end of the stream, got {m:?}"),
                Ok(None) => return Status::new(Code::Ok, ""),
                Err(s) => return s,
            }
        }
    }

    /// Expects the stream to end with `code` and a message containing `text`.
    pub async fn expect_end(&mut self, code: Code, text: &str) {
        let s = self.end().await;
        assert_eq!(s.code(), code, "{s:?}");
        assert!(s.message().contains(text), "message {:?} should contain {text:?}", s.message());
    }

    /// Closes the request side.
    pub fn close(self) -> Streaming<AnnouncePeerResponse> {
        self.rx
    }
}

/// A seed peer's upload API that records triggers.
#[derive(Clone, Default)]
pub struct FakeSeed {
    pub triggers: Arc<Mutex<Vec<dpb::TriggerDownloadTaskRequest>>>,
    /// Refuse triggers (UNAVAILABLE) instead of taking them.
    pub refuse: bool,
}

impl FakeSeed {
    /// Serves on 127.0.0.1:0 until `stop`; returns the address.
    pub async fn serve(&self, stop: CancellationToken) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = DfdaemonUploadServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
                .await
                .unwrap();
        });
        addr
    }

    pub fn calls(&self) -> Vec<dpb::TriggerDownloadTaskRequest> {
        self.triggers.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl DfdaemonUpload for FakeSeed {
    type SyncPiecesStream = tokio_stream::Empty<Result<dpb::SyncPiecesResponse, Status>>;

    async fn sync_pieces(
        &self,
        _request: tonic::Request<dpb::SyncPiecesRequest>,
    ) -> Result<tonic::Response<Self::SyncPiecesStream>, Status> {
        Err(Status::unimplemented("fake seed"))
    }

    async fn trigger_download_task(
        &self,
        request: tonic::Request<dpb::TriggerDownloadTaskRequest>,
    ) -> Result<tonic::Response<()>, Status> {
        self.triggers.lock().unwrap().push(request.into_inner());
        if self.refuse {
            return Err(Status::unavailable("fake seed refuses"));
        }
        Ok(tonic::Response::new(()))
    }

    async fn stat_task(
        &self,
        _request: tonic::Request<dpb::StatTaskRequest>,
    ) -> Result<tonic::Response<dpb::TaskInfo>, Status> {
        Err(Status::not_found("fake seed stores nothing"))
    }
}

/// A codec that sends raw bytes as messages and reads raw bytes back, to
/// feed the scheduler frames that are not protobuf.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder/decoder of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

/// Sends `frames` as one AnnouncePeer stream and returns its final status.
pub async fn announce_raw(addr: SocketAddr, frames: Vec<Vec<u8>>) -> Status {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http_path("/darter.scheduler.v1.Scheduler/AnnouncePeer");
    let request = tonic::Request::new(tokio_stream::iter(frames));
    let mut responses = grpc.streaming(request, path, RawCodec).await.unwrap().into_inner();
    loop {
        match tokio::time::timeout(DEADLINE, responses.message()).await.expect("the stream ends in time") {
            Ok(Some(_)) => continue,
            Ok(None) => return Status::new(Code::Ok, ""),
            Err(s) => return s,
        }
    }
}

fn http_path(p: &'static str) -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static(p)
}
