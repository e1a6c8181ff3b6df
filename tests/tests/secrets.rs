//! Secrets at rest (issue 14, attack 8), end to end: a download through a
//! real cluster (manager, scheduler, seed peer, peer) of a signed URL with
//! an `Authorization` header. Neither the signature nor the credential
//! reaches a file (records, logs), a `StatTask` or `StatPeer` answer (the
//! peer's and the seed's download socket and upload API, the scheduler) or
//! a `/metrics` page; the daemons' data is readable by their user only.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use darter_common::task_id::TaskId;
use darter_common::tls::{Expect, Role, Transport};
use darter_proto::dfdaemon::v1::StatTaskRequest;
use darter_proto::dfdaemon::v1::dfdaemon_download_client::DfdaemonDownloadClient;
use darter_proto::dfdaemon::v1::dfdaemon_upload_client::DfdaemonUploadClient;
use darter_proto::scheduler::v1 as spb;
use darter_proto::scheduler::v1::scheduler_client::SchedulerClient;
use testkit::cluster::{Cluster, ClusterOptions};
use testkit::dfdaemon::{DaemonProcess, bin_dir};
use testkit::origin::{Behavior, Content, Origin};
use testkit::{random_bytes, sha256_file, sha256_hex};

/// What the signed URL carries.
const SIGNATURE: &str = "sig0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The caller's credential.
const TOKEN: &str = "tok9a8b7c6d5e4f30211203f4e5d6c7b8a9";

/// Files under `dir` (recursively) whose bytes contain `secret`.
fn files_containing(dir: &Path, secret: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Every directory and file under `dir` with a permission for group or others.
fn readable_by_others(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::symlink_metadata(&d).unwrap().permissions().mode();
        if mode & 0o077 != 0 {
            found.push(format!("{} {:o}", d.display(), mode & 0o777));
        }
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let mode = entry.metadata().unwrap().permissions().mode();
                if mode & 0o077 != 0 {
                    found.push(format!("{} {:o}", path.display(), mode & 0o777));
                }
            }
        }
    }
    found
}

/// Connects gRPC to a daemon's download socket.
#[derive(Clone)]
struct Uds(std::path::PathBuf);

impl tonic::codegen::Service<http::Uri> for Uds {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    }
}

/// A channel to `addr` as the member holding `transport`, to a server that
/// must be `expect`.
fn member_channel(transport: &Transport, addr: std::net::SocketAddr, expect: Expect) -> tonic::transport::Channel {
    transport.channel(darter_common::tls::connect::endpoint(&addr.to_string()).unwrap(), expect)
}

/// `StatTask` on a daemon's download socket and on its upload API (as the
/// member holding `transport`), as text.
async fn stat_daemon(daemon: &DaemonProcess, transport: &Transport, task: &str) -> String {
    let channel = tonic::transport::Endpoint::from_static("http://dfdaemon.local")
        .connect_with_connector(Uds(daemon.socket.clone()))
        .await
        .unwrap();
    let local = DfdaemonDownloadClient::new(channel)
        .stat_task(StatTaskRequest { task_id: task.into() })
        .await
        .unwrap()
        .into_inner();
    let mut upload = DfdaemonUploadClient::new(member_channel(transport, daemon.upload_addr(), Expect::daemon(1)));
    let remote = upload.stat_task(StatTaskRequest { task_id: task.into() }).await.unwrap().into_inner();
    assert!(local.url.contains("X-Amz-Signature=REDACTED"), "the URL is shown, redacted: {local:?}");
    format!("{local:?}\n{remote:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_url_and_a_callers_credential_are_never_stored_or_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ClusterOptions::new(dir.path(), &bin_dir(), 0);
    options.scheduler_env.push(("SCHEDULER__LOG__LEVEL".into(), "debug".into()));
    let mut cluster = Cluster::start(&options).await.unwrap();
    let mut peer = cluster.daemon_options("peer", false, &[]);
    peer.log_level = "debug".into();
    let peer = DaemonProcess::start(peer).await.unwrap();

    let origin = Origin::start().await;
    let data = random_bytes(3 << 20, 71);
    let auth = format!("Bearer {TOKEN}");
    let behavior = Behavior { require_header: Some(("authorization".into(), auth.clone())), ..Default::default() };
    origin.add("/private/blob", Content::Bytes(data.clone()), behavior);
    let url = format!(
        "{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA{TOKEN}&X-Amz-Signature={SIGNATURE}&v=1",
        origin.url("/private/blob")
    );
    let out = dir.path().join("out");
    let r = peer.dfget(&url, &out, &["-H", &format!("Authorization: {auth}"), "--timeout", "2m"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, cluster.logs());
    assert_eq!(sha256_file(&out).unwrap(), sha256_hex(&data));
    let seed = cluster.seed.take().expect("the cluster has a seed");
    assert!(origin.stats("/private/blob").requests > 0);

    let task = TaskId::for_download(&url, None, "", "").unwrap().to_string();
    // The upload APIs and the scheduler answer members of the cluster only.
    let member = cluster.manager.as_ref().unwrap().enroll(Role::Peer, "prober").await.unwrap();
    let mut answers = vec![stat_daemon(&peer, &member, &task).await, stat_daemon(&seed, &member, &task).await];
    let to_scheduler = member_channel(&member, cluster.scheduler.addr, Expect::scheduler(1));
    let mut scheduler = SchedulerClient::new(to_scheduler);
    let info = scheduler.stat_task(spb::StatTaskRequest { task_id: task.clone() }).await.unwrap().into_inner();
    assert!(info.url.ends_with("/private/blob?v=1"), "the URL is shown, normalised: {info:?}");
    answers.push(format!("{info:?}"));
    let scheduler_log = testkit::service::plain(&std::fs::read_to_string(&cluster.scheduler.log_path).unwrap());
    let peer_ids: Vec<&str> = scheduler_log
        .lines()
        .filter(|l| l.contains("peer registered"))
        .filter_map(|l| l.split("peer_id=").nth(1)?.split_whitespace().next())
        .collect();
    assert!(!peer_ids.is_empty(), "{scheduler_log}");
    for id in peer_ids {
        let request = spb::StatPeerRequest { task_id: task.clone(), peer_id: id.into() };
        if let Ok(p) = scheduler.stat_peer(request).await {
            answers.push(format!("{:?}", p.into_inner()));
        }
    }
    let mut pages = Vec::new();
    for addr in [peer.metrics_addr(), seed.metrics_addr(), cluster.scheduler.metrics_addr] {
        pages.push(testkit::metrics::scrape(addr).await.unwrap());
    }

    for secret in [SIGNATURE, TOKEN] {
        // Every file of the cluster: records, pieces logs, content, logs, the manager's database.
        let files = files_containing(dir.path(), secret);
        assert!(files.is_empty(), "{secret} in {files:?}");
        for answer in &answers {
            assert!(!answer.contains(secret), "{secret} answered: {answer}");
        }
        for page in &pages {
            assert!(!page.contains(secret), "{secret} in /metrics:\n{page}");
        }
    }
    for daemon in [&peer, &seed] {
        let data = daemon.options.dir.join("data");
        let wide = readable_by_others(&data);
        assert!(wide.is_empty(), "readable by others: {wide:?}");
        let tasks: Vec<_> = std::fs::read_dir(data.join("tasks")).unwrap().flatten().collect();
        assert_eq!(tasks.len(), 1, "the task is stored on {}", data.display());
        for f in ["task.json", "pieces.log"] {
            let mode = std::fs::metadata(tasks[0].path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
}
