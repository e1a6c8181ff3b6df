//! Trust end to end (issue 14), against real binaries on loopback: attacks
//! 1 (content poisoning), 2 (SSRF through a seed) and 7 (hijack by ID);
//! callers refused on every control port (plaintext, no certificate, another
//! CA's, expired, revoked, the wrong role) with an error that says why;
//! certificate renewal and a manager restart during a download; join tokens
//! that are revoked or used up; piece data only for granted children.
//!
//! Each attack is a real gRPC call, made the way an attacker on the node
//! network would make it (see `testkit::caller`: the attacker accepts any
//! server). `the_attacks_succeed_against_a_plaintext_cluster` makes the same
//! calls against a cluster in plaintext mode, which is every cluster before
//! mutual TLS, and shows they get through there: the probes catch the attacks.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use darter_common::task_id::TaskId;
use darter_common::tls::{Expect, Role, Transport, connect};
use darter_proto::common::v1 as cpb;
use darter_proto::dfdaemon::v1 as dpb;
use darter_proto::dfdaemon::v1::dfdaemon_upload_client::DfdaemonUploadClient;
use darter_proto::manager::v1 as mpb;
use darter_proto::manager::v1::manager_client::ManagerClient;
use darter_proto::scheduler::v1 as spb;
use darter_proto::scheduler::v1::scheduler_client::SchedulerClient;
use testkit::caller::{self, Presents, refusal};
use testkit::cluster::{Cluster, ClusterOptions};
use testkit::dfdaemon::{DaemonOptions, DaemonProcess, bin_dir};
use testkit::eventually::{poll, wait_until};
use testkit::manager::ManagerProcess;
use testkit::origin::{Behavior, Content, Origin};
use testkit::pki::{self, TestCa};
use testkit::{random_bytes, sha256_file, sha256_hex};
use tonic::transport::Channel;
use tonic::{Code, Status};

const MIB: usize = 1 << 20;

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- channels

/// A channel to `addr` as a member holding `transport`, to a server that
/// must be `expect`.
fn member_channel(transport: &Transport, addr: SocketAddr, expect: Expect) -> Channel {
    let endpoint = connect::endpoint(&addr.to_string()).unwrap().connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT);
    transport.channel(endpoint, expect)
}

/// A certificate of the kit's cluster from `ca`, for `role` on `host`.
fn issued(ca: &TestCa, role: Role, host: &str) -> Presents {
    Presents::certificate(ca.issue(&pki::identity(role, host)))
}

/// What an attacker shows who has no certificate of the cluster: nothing,
/// TLS without a certificate, or a certificate for `role` from a CA of its
/// own.
fn strangers(role: Role) -> Vec<(&'static str, Presents)> {
    vec![
        ("plaintext", Presents::Plaintext),
        ("TLS without a certificate", Presents::NoCertificate),
        ("a certificate from another CA", issued(&TestCa::new(), role, "evil")),
    ]
}

fn manager(cluster: &Cluster) -> &ManagerProcess {
    cluster.manager.as_ref().expect("the cluster has a manager")
}

fn seed(cluster: &Cluster) -> &DaemonProcess {
    cluster.seed.as_ref().expect("the cluster has a seed")
}

/// The host ID a daemon announces (`<hostname>-<ip>-<upload port>`).
fn host_id(name: &str, daemon: &DaemonProcess) -> String {
    format!("{name}-127.0.0.1-{}", daemon.upload_addr().port())
}

fn task_id(url: &str) -> String {
    TaskId::for_download(url, None, "", "").unwrap().to_string()
}

/// Asserts `result` is a refusal whose text (code, message, causes) says
/// `why`; `what` names the call. Answers the text.
fn assert_refused<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, why: &str) -> String {
    let status = match result {
        Ok(answer) => panic!("{what}: accepted ({answer:?})"),
        Err(s) => s,
    };
    let text = refusal(&status);
    assert!(text.contains(why), "{what}: refused, but the error does not say why ({why:?}): {text}");
    text
}

/// Asserts `result` is PERMISSION_DENIED, saying `why`.
fn assert_denied<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, why: &str) {
    let text = assert_refused(what, result, why);
    assert!(text.starts_with("PermissionDenied"), "{what}: {text}");
}

/// What a server's refusal of `who` (see [`strangers`]) says; `manager`:
/// on the manager's port, which lets a client without a certificate through
/// the handshake (to enroll) and refuses its other calls.
fn why(who: &str, manager: bool) -> &'static str {
    match who {
        "plaintext" => "this port speaks mutual TLS only",
        "TLS without a certificate" if manager => "this call needs a member certificate",
        "TLS without a certificate" => "CertificateRequired",
        "a certificate from another CA" => "UnknownCA",
        "an expired certificate" => "CertificateExpired",
        "a revoked certificate" => "CertificateRevoked",
        other => panic!("no refusal known for {other}"),
    }
}

// ------------------------------------------------------------------ probes

/// `RegisterSeedPeer` of a seed named `hostname` that lives at `addr`.
async fn register_seed(channel: Channel, hostname: &str, addr: SocketAddr) -> Result<mpb::Member, Status> {
    let host = cpb::Host {
        id: format!("{hostname}-{}-{}", addr.ip(), addr.port()),
        hostname: hostname.into(),
        ip: addr.ip().to_string(),
        port: u32::from(addr.port()),
        download_port: u32::from(addr.port()),
        r#type: cpb::HostType::Seed as i32,
        ..Default::default()
    };
    let request = mpb::RegisterSeedPeerRequest { host: Some(host), cluster_id: 0 };
    ManagerClient::new(channel).register_seed_peer(request).await.map(tonic::Response::into_inner)
}

/// `RegisterScheduler` of a scheduler named `hostname` at `addr`.
async fn register_scheduler(channel: Channel, hostname: &str, addr: SocketAddr) -> Result<mpb::Member, Status> {
    let request = mpb::RegisterSchedulerRequest {
        hostname: hostname.into(),
        ip: addr.ip().to_string(),
        port: u32::from(addr.port()),
        ..Default::default()
    };
    ManagerClient::new(channel).register_scheduler(request).await.map(tonic::Response::into_inner)
}

/// `ListSchedulers` (any member may ask).
async fn list_schedulers(channel: Channel) -> Result<mpb::ListSchedulersResponse, Status> {
    let request =
        mpb::ListSchedulersRequest { hostname: "prober".into(), ip: "127.0.0.1".into(), ..Default::default() };
    ManagerClient::new(channel).list_schedulers(request).await.map(tonic::Response::into_inner)
}

/// Opens a `KeepAlive` stream in the name of seed-peer member `id`
/// (`hostname`, `ip` as registered) and closes it after one message: before
/// mutual TLS, this marked the member inactive.
async fn keep_alive(channel: Channel, id: u64, hostname: &str, ip: &str) -> Result<(), Status> {
    let message = mpb::KeepAliveRequest {
        kind: mpb::MemberKind::SeedPeer as i32,
        member_id: id,
        hostname: hostname.into(),
        ip: ip.into(),
    };
    ManagerClient::new(channel).keep_alive(tokio_stream::iter([message])).await.map(drop)
}

/// `AnnounceHost` of host `id` named `hostname` at `addr`, as `kind`.
async fn announce_host(
    channel: Channel,
    id: &str,
    hostname: &str,
    addr: SocketAddr,
    kind: cpb::HostType,
) -> Result<(), Status> {
    let host = cpb::Host {
        id: id.into(),
        hostname: hostname.into(),
        ip: addr.ip().to_string(),
        port: u32::from(addr.port()),
        download_port: u32::from(addr.port()),
        r#type: kind as i32,
        ..Default::default()
    };
    let request = spb::AnnounceHostRequest { host: Some(host), interval_ms: 60_000 };
    SchedulerClient::new(channel).announce_host(request).await.map(drop)
}

/// `LeaveHost` of host `id`.
async fn leave_host(channel: Channel, id: &str) -> Result<(), Status> {
    SchedulerClient::new(channel).leave_host(spb::LeaveHostRequest { host_id: id.into() }).await.map(drop)
}

/// `LeavePeer` of peer `peer_id` of `task_id`.
async fn leave_peer(channel: Channel, task_id: &str, peer_id: &str) -> Result<(), Status> {
    let request = spb::LeavePeerRequest { task_id: task_id.into(), peer_id: peer_id.into() };
    SchedulerClient::new(channel).leave_peer(request).await.map(drop)
}

/// Registers host `host_id` for `url` on an announce stream and reports
/// piece 0 as fetched from the origin with a digest of its own: the
/// reference every child would check against. Answers the scheduler's
/// first response.
async fn report_digest(channel: Channel, host_id: &str, url: &str) -> Result<spb::AnnouncePeerResponse, Status> {
    use spb::announce_peer_request::Request;
    let message = |request| spb::AnnouncePeerRequest {
        host_id: host_id.into(),
        task_id: task_id(url),
        peer_id: format!("{host_id}-poison"),
        request: Some(request),
    };
    let download = cpb::Download { url: url.into(), ..Default::default() };
    let poisoned = cpb::Piece {
        number: 0,
        offset: 0,
        length: 4 * MIB as u64,
        digest: format!("sha256:{}", sha256_hex(b"poison")),
        source: cpb::PieceSource::Origin as i32,
        ..Default::default()
    };
    let messages = [
        message(Request::Register(spb::RegisterPeerRequest { download: Some(download), present_pieces: Vec::new() })),
        message(Request::DownloadPieceBackToSourceFinished(spb::DownloadPieceBackToSourceFinishedRequest {
            piece: Some(poisoned),
            content_length: Some(8 * MIB as u64),
            piece_length: 4 * MIB as u64,
        })),
    ];
    let mut responses = SchedulerClient::new(channel).announce_peer(tokio_stream::iter(messages)).await?.into_inner();
    responses.message().await?.ok_or_else(|| Status::unknown("the stream ended without an answer"))
}

/// `StatTask` on a scheduler: a caller let in gets an answer or NOT_FOUND.
async fn scheduler_stat(channel: Channel, url: &str) -> Result<(), Status> {
    let request = spb::StatTaskRequest { task_id: task_id(url) };
    match SchedulerClient::new(channel).stat_task(request).await {
        Err(s) if s.code() == Code::NotFound => Ok(()),
        r => r.map(drop),
    }
}

/// `TriggerDownloadTask` of `url` on a seed's upload port: what a scheduler
/// sends to make the seed fetch from the origin.
async fn trigger(channel: Channel, url: &str) -> Result<(), Status> {
    let download = cpb::Download { url: url.into(), ..Default::default() };
    let request = dpb::TriggerDownloadTaskRequest { task_id: task_id(url), download: Some(download) };
    DfdaemonUploadClient::new(channel).trigger_download_task(request).await.map(drop)
}

/// `StatTask` on a daemon's upload port: a caller let in gets an answer or
/// NOT_FOUND.
async fn upload_stat(channel: Channel, url: &str) -> Result<(), Status> {
    let request = dpb::StatTaskRequest { task_id: task_id(url) };
    match DfdaemonUploadClient::new(channel).stat_task(request).await {
        Err(s) if s.code() == Code::NotFound => Ok(()),
        r => r.map(drop),
    }
}

// ----------------------------------------------------------------- helpers

/// The seed-peer rows the manager holds (REST, as root).
async fn seed_rows(manager: &ManagerProcess) -> Vec<serde_json::Value> {
    let (status, rows) = manager.rest("GET", "/api/v1/seed-peers", None).await.unwrap();
    assert_eq!(status, 200, "{rows}");
    rows.as_array().cloned().unwrap_or_default()
}

/// `peer` downloads `url` through the swarm: exit 0, the origin's bytes,
/// some of them from other peers.
async fn download_from_the_swarm(cluster: &Cluster, peer: &DaemonProcess, url: &str, out: &Path, expected: &str) {
    let r = peer.dfget(url, out, &["--timeout", "2m"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, cluster.logs());
    assert_eq!(sha256_file(out).unwrap(), expected, "{} is the origin's content", out.display());
    assert!(!r.stderr.contains("peers 0 B"), "bytes came from the swarm: {}", r.stderr);
}

/// Lines of a log that say the member renewed its certificate.
fn renewals(log: &str) -> usize {
    testkit::service::plain(log).lines().filter(|l| l.contains("renewed the certificate")).count()
}

/// A cluster of a manager, a scheduler, a seed and `peers` peers in `dir`
/// with `env` for every daemon.
fn options(dir: &Path, peers: usize, daemon_env: &[(&str, &str)]) -> ClusterOptions {
    let mut o = ClusterOptions::new(dir, &bin_dir(), peers).with_manager();
    o.daemon_env.extend(daemon_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    o
}

/// A request for piece `number` of `task`, with `grant` in `x-darter-grant`
/// when given; the connection closes after the answer.
fn piece_request(task: &str, number: u32, grant: Option<&str>) -> String {
    let grant = grant.map(|g| format!("x-darter-grant: {g}\r\n")).unwrap_or_default();
    format!("GET /v1/tasks/{task}/pieces/{number} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{grant}\r\n")
}

/// Reads `conn` to its end (or its first error): what came before.
fn read_all(conn: &mut impl std::io::Read) -> (Vec<u8>, Option<std::io::Error>) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (answer, None),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return (answer, Some(e)),
        }
    }
}

/// The status and body of an HTTP answer (bytes read off a connection).
fn status_and_body(answer: &[u8]) -> (u16, Vec<u8>) {
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&answer[..head_end]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, answer[head_end..].to_vec())
}

/// `GET` of piece `number` of `task` from the piece server at `addr`, in
/// plain HTTP: the status and the body.
fn get_piece(addr: SocketAddr, task: &str, number: u32, grant: Option<&str>) -> (u16, Vec<u8>) {
    use std::io::Write as _;
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    conn.write_all(piece_request(task, number, grant).as_bytes()).unwrap();
    status_and_body(&read_all(&mut conn).0)
}

/// The ALPN protocol of an encrypted piece port.
const PIECES_ALPN: &[u8] = darter_common::tls::ALPN_PIECES;

/// A member's TLS client config for an encrypted piece port.
fn member_pieces_config(transport: &Transport) -> std::sync::Arc<rustls::ClientConfig> {
    transport.piece_client_config(Expect::daemon(pki::CLUSTER)).unwrap()
}

/// The same over TLS with `config` (an encrypted piece port): the status
/// and body, or why the connection failed.
fn get_piece_tls(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    task: &str,
    number: u32,
    grant: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    use std::io::Write as _;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    let mut conn = rustls::StreamOwned::new(tls, tcp);
    conn.write_all(piece_request(task, number, grant).as_bytes()).map_err(|e| e.to_string())?;
    match read_all(&mut conn) {
        (answer, _) if !answer.is_empty() => Ok(status_and_body(&answer)),
        (_, e) => Err(e.map_or("closed without an answer".into(), |e| e.to_string())),
    }
}

// ------------------------------------------------------------------- tests

/// Attack 1: a stranger cannot become a seed (at the manager or the
/// scheduler) nor set a piece's reference digest, a peer of the cluster
/// cannot register as a seed, and the honest swarm's download is the
/// origin's bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_cannot_pose_as_a_seed_or_report_digests() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 1, &[])).await.unwrap();
    let manager = manager(&cluster);
    let origin = Origin::start().await;
    let data = random_bytes(8 * MIB, 141);
    origin.add("/blob", Content::Bytes(data.clone()), Behavior::default());
    let url = origin.url("/blob");
    // Where the fake seed would serve its own bytes.
    let evil = origin.addr();

    for (who, presents) in strangers(Role::SeedPeer) {
        let to_manager = caller::channel(manager.grpc_addr, &presents);
        let to_scheduler = caller::channel(cluster.scheduler.addr, &presents);
        let registered = register_seed(to_manager, "evil", evil).await;
        assert_refused(&format!("{who}: RegisterSeedPeer"), registered, why(who, true));
        let id = format!("evil-127.0.0.1-{}", evil.port());
        let announced = announce_host(to_scheduler.clone(), &id, "evil", evil, cpb::HostType::Seed).await;
        assert_refused(&format!("{who}: AnnounceHost as a seed"), announced, why(who, false));
        let reported = report_digest(to_scheduler, &id, &url).await;
        assert_refused(&format!("{who}: a piece digest"), reported, why(who, false));
    }
    let peer = manager.enroll(Role::Peer, "peer-x").await.unwrap();
    let registered = register_seed(member_channel(&peer, manager.grpc_addr, Expect::manager()), "peer-x", evil).await;
    assert_denied("a peer's RegisterSeedPeer", registered, "may not make this call");

    let hosts: Vec<String> =
        seed_rows(manager).await.iter().map(|r| r["hostname"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(hosts, ["seed"], "the manager lists the real seed only");
    let out = dir.path().join("out");
    download_from_the_swarm(&cluster, &cluster.peers[0], &url, &out, &sha256_hex(&data)).await;
}

/// Attack 2: only the seed's own cluster's schedulers trigger it. Plaintext,
/// no certificate, another CA's scheduler, a peer of the cluster and a
/// scheduler of another cluster are refused, and the loopback secret is
/// never fetched; the seed still takes its scheduler's triggers.
#[tokio::test(flavor = "multi_thread")]
async fn a_seed_fetches_only_for_its_clusters_schedulers() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 1, &[])).await.unwrap();
    let manager = manager(&cluster);
    let upload = seed(&cluster).upload_addr();
    let origin = Origin::start().await;
    origin.add("/secret", Content::Bytes(b"metadata-token-123".as_slice().into()), Behavior::default());
    let data = random_bytes(4 * MIB, 142);
    origin.add("/public", Content::Bytes(data.clone()), Behavior::default());
    let secret = origin.url("/secret");

    for (who, presents) in strangers(Role::Scheduler) {
        let refused = trigger(caller::channel(upload, &presents), &secret).await;
        assert_refused(&format!("{who}: TriggerDownloadTask"), refused, why(who, false));
    }
    let peer = manager.enroll(Role::Peer, "peer-x").await.unwrap();
    let refused = trigger(member_channel(&peer, upload, Expect::seed_peer(pki::CLUSTER)), &secret).await;
    assert_denied("a peer's TriggerDownloadTask", refused, "it needs: scheduler");

    let (status, other) =
        manager.rest("POST", "/api/v1/clusters", Some(&serde_json::json!({ "name": "other" }))).await.unwrap();
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_i64().unwrap();
    let join = manager.join("scheduler", Some(other_id)).await.unwrap();
    let foreign = manager.enroll_with(&join, Role::Scheduler, "scheduler-other").await.unwrap();
    assert_eq!(foreign.identity().unwrap().cluster_id, other_id as u64);
    let refused = trigger(member_channel(&foreign, upload, Expect::seed_peer(pki::CLUSTER)), &secret).await;
    assert_denied("another cluster's scheduler's TriggerDownloadTask", refused, "in cluster 1");

    // The seed fetches for its own scheduler: the download goes through it.
    let out = dir.path().join("out");
    download_from_the_swarm(&cluster, &cluster.peers[0], &origin.url("/public"), &out, &sha256_hex(&data)).await;
    assert!(origin.stats("/public").requests > 0, "the seed fetched /public");
    assert_eq!(origin.stats("/secret").requests, 0, "the secret was never fetched\n{}", cluster.logs());
}

/// Attack 7: with a certificate for host `peer-x`, nothing can be done in
/// `peer-0`'s or the seed's name: `LeaveHost`, `AnnounceHost` and
/// `LeavePeer` for `peer-0`, `KeepAlive` for the seed's member ID (with a
/// peer's and with another seed's certificate) are refused, and the victims
/// stay: the seed is still active and listed, `peer-0` still downloads.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_cannot_act_in_another_hosts_name() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 1, &[])).await.unwrap();
    let manager = manager(&cluster);
    let victim = &cluster.peers[0];
    let origin = Origin::start().await;
    let (a, b) = (random_bytes(4 * MIB, 143), random_bytes(4 * MIB, 144));
    origin.add("/a", Content::Bytes(a.clone()), Behavior::default());
    origin.add("/b", Content::Bytes(b.clone()), Behavior::default());
    let url = origin.url("/a");
    // peer-0 has announced its host and holds a peer of the task.
    download_from_the_swarm(&cluster, victim, &url, &dir.path().join("a"), &sha256_hex(&a)).await;
    let victim_host = host_id("peer-0", victim);
    let log = testkit::service::plain(&std::fs::read_to_string(&cluster.scheduler.log_path).unwrap());
    let victim_peer = log
        .lines()
        .filter(|l| l.contains("peer registered") && l.contains(&format!("host_id={victim_host} ")))
        .find_map(|l| l.split("peer_id=").nth(1)?.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| panic!("the scheduler registered {victim_host}'s peer:\n{log}"));

    let attacker = manager.enroll(Role::Peer, "peer-x").await.unwrap();
    let to_scheduler = || member_channel(&attacker, cluster.scheduler.addr, Expect::scheduler(pki::CLUSTER));
    let owner = "belongs to peer peer-0";
    assert_denied("LeaveHost for peer-0", leave_host(to_scheduler(), &victim_host).await, owner);
    let announced =
        announce_host(to_scheduler(), &victim_host, "peer-x", victim.upload_addr(), cpb::HostType::Normal).await;
    assert_denied("AnnounceHost of peer-0's ID", announced, owner);
    assert_denied("LeavePeer of peer-0's peer", leave_peer(to_scheduler(), &task_id(&url), &victim_peer).await, owner);

    let rows = seed_rows(manager).await;
    let row = rows.iter().find(|r| r["hostname"] == "seed").unwrap_or_else(|| panic!("the seed's row: {rows:?}"));
    let (seed_id, seed_ip) = (row["id"].as_u64().unwrap(), row["ip"].as_str().unwrap().to_owned());
    let to_manager = member_channel(&attacker, manager.grpc_addr, Expect::manager());
    let kept = keep_alive(to_manager, seed_id, "seed", &seed_ip).await;
    assert_denied("a peer's KeepAlive for the seed", kept, "may not make this call");
    let other_seed = manager.enroll(Role::SeedPeer, "seed-x").await.unwrap();
    let kept = keep_alive(member_channel(&other_seed, manager.grpc_addr, Expect::manager()), seed_id, "seed", &seed_ip);
    assert_denied("another seed's KeepAlive for the seed", kept.await, &format!("may not keep member {seed_id} alive"));

    let rows = seed_rows(manager).await;
    let row = rows.iter().find(|r| r["hostname"] == "seed").unwrap_or_else(|| panic!("the seed's row: {rows:?}"));
    assert_eq!(row["state"], "active", "the seed stays active: {row}");
    let listed = manager.list_schedulers().await.unwrap();
    assert!(listed.seed_peers.iter().any(|s| s.hostname == "seed"), "the seed is still handed out: {listed:?}");
    let member = manager.enroll(Role::Peer, "peer-y").await.unwrap();
    let request = spb::StatPeerRequest { task_id: task_id(&url), peer_id: victim_peer.clone() };
    let to_scheduler = member_channel(&member, cluster.scheduler.addr, Expect::scheduler(pki::CLUSTER));
    let stat = SchedulerClient::new(to_scheduler).stat_peer(request).await;
    assert!(stat.is_ok(), "peer-0's peer is still there: {stat:?}");
    download_from_the_swarm(&cluster, victim, &origin.url("/b"), &dir.path().join("b"), &sha256_hex(&b)).await;
}

/// A caller without a valid certificate of the cluster is refused on every
/// control port (manager, scheduler, the seed's and a peer's upload API),
/// saying why: plaintext, no certificate, another CA's, an expired one, a
/// revoked one (at once by the manager, within a trust-bundle refresh by
/// the others); and a peer's certificate calling what only a scheduler may.
#[tokio::test(flavor = "multi_thread")]
async fn callers_without_a_valid_certificate_are_refused_on_every_port() {
    let dir = tempfile::tempdir().unwrap();
    // The manager signs with the kit's CA, so the kit can issue what the
    // manager never would: an expired certificate of the cluster.
    let ca = TestCa::new();
    let mut o = options(dir.path(), 1, &[]);
    o.manager_env.extend(ca.write_ca(&dir.path().join("ca")));
    let cluster = Cluster::start(&o).await.unwrap();
    let manager = manager(&cluster);
    let url = "http://127.0.0.1:9/nothing";
    let ports = [
        ("manager", manager.grpc_addr, Expect::manager()),
        ("scheduler", cluster.scheduler.addr, Expect::scheduler(pki::CLUSTER)),
        ("seed upload", seed(&cluster).upload_addr(), Expect::daemon(pki::CLUSTER)),
        ("peer upload", cluster.peers[0].upload_addr(), Expect::daemon(pki::CLUSTER)),
    ];
    let call = |port: &str, channel: Channel| {
        let port = port.to_owned();
        async move {
            match port.as_str() {
                "manager" => list_schedulers(channel).await.map(drop),
                "scheduler" => scheduler_stat(channel, url).await,
                _ => upload_stat(channel, url).await,
            }
        }
    };

    // A certificate of the cluster is let in everywhere.
    let good = issued(&ca, Role::Peer, "peer-y");
    for (port, addr, _) in &ports {
        let answer = call(port, caller::channel(*addr, &good)).await;
        assert!(answer.is_ok(), "{port}: a member is let in: {:?}", answer.map_err(|s| refusal(&s)));
    }
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let expired =
        Presents::certificate(ca.issue_between(&pki::identity(Role::Peer, "peer-y"), now - 2 * hour, now - hour));
    let mut callers = strangers(Role::Peer);
    callers.push(("an expired certificate", expired));
    for (who, presents) in &callers {
        for (port, addr, _) in &ports {
            let answer = call(port, caller::channel(*addr, presents)).await;
            assert_refused(&format!("{who} on the {port} port"), answer, why(who, *port == "manager"));
        }
    }

    // A peer's certificate may not do what only a scheduler may.
    let peer = manager.enroll(Role::Peer, "peer-z").await.unwrap();
    let to = |i: usize| member_channel(&peer, ports[i].1, ports[i].2.clone());
    assert_denied(
        "a peer's RegisterScheduler",
        register_scheduler(to(0), "peer-z", cluster.scheduler.addr).await,
        "it needs: scheduler",
    );
    assert_denied("a peer's TriggerDownloadTask", trigger(to(2), url).await, "it needs: scheduler");
    let scheduler = manager.enroll(Role::Scheduler, "scheduler-z").await.unwrap();
    let to_scheduler = member_channel(&scheduler, cluster.scheduler.addr, Expect::scheduler(pki::CLUSTER));
    let announced =
        announce_host(to_scheduler, "scheduler-z-1", "scheduler-z", cluster.scheduler.addr, cpb::HostType::Normal)
            .await;
    assert_denied("a scheduler's AnnounceHost", announced, "it needs: peer, seed_peer");

    // Revoked: let in before, refused after; the manager at once.
    for (port, addr, expect) in &ports {
        let answer = call(port, member_channel(&peer, *addr, expect.clone())).await;
        assert!(answer.is_ok(), "{port}: the peer is let in before: {:?}", answer.map_err(|s| refusal(&s)));
    }
    let serial = peer.credentials().unwrap().material().facts.serial.clone();
    let (status, body) = manager.rest("DELETE", &format!("/api/v1/certificates/{serial}"), None).await.unwrap();
    assert_eq!(status, 204, "{body}");
    let (port, addr, expect) = &ports[0];
    let answer = call(port, member_channel(&peer, *addr, expect.clone())).await;
    assert_refused(&format!("a revoked certificate on the {port} port"), answer, why("a revoked certificate", true));
    for (port, addr, expect) in &ports[1..] {
        let what = format!("the {port} port to refuse the revoked certificate");
        // The daemons fetch the trust bundle every 5 s, the scheduler every 0.5 s.
        let refused = poll(&what, Duration::from_secs(10), || {
            let answer = call(port, member_channel(&peer, *addr, expect.clone()));
            async move { answer.await.err().map(|s| refusal(&s)) }
        });
        let text = refused.await.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        let revoked = why("a revoked certificate", false);
        assert!(text.contains(revoked), "a revoked certificate on the {port} port: the error says why: {text}");
    }
}

/// Certificates valid 6 s (members renew at about 4 s) renew during a
/// 12-second download, which completes with the origin's bytes.
#[tokio::test(flavor = "multi_thread")]
async fn certificates_renew_during_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), 1, &[("DFDAEMON__BACK_TO_SOURCE__CONCURRENCY", "1")]);
    o.manager_env.push(("MANAGER__TLS__CERT_VALIDITY".into(), "6s".into()));
    let cluster = Cluster::start(&o).await.unwrap();
    let origin = Origin::start().await;
    let data = random_bytes(12 * MIB, 145);
    // One request at 1 MiB/s: the download takes at least 12 s.
    origin.add("/slow", Content::Bytes(data.clone()), Behavior { rate_limit: Some(MIB as u64), ..Default::default() });
    let members = || [cluster.scheduler.log_tail(100_000), seed(&cluster).log(), cluster.peers[0].log()];
    let before = members().map(|l| renewals(&l));

    let out = dir.path().join("out");
    download_from_the_swarm(&cluster, &cluster.peers[0], &origin.url("/slow"), &out, &sha256_hex(&data)).await;
    let after = members().map(|l| renewals(&l));
    for (i, name) in ["scheduler", "seed", "peer-0"].iter().enumerate() {
        assert!(
            after[i] >= before[i] + 2,
            "{name} renewed its certificate during the download ({} -> {})\n{}",
            before[i],
            after[i],
            cluster.logs()
        );
    }
}

/// The manager killed and restarted (same addresses, same database) in the
/// middle of a download: the download completes, and afterwards the members
/// renew with the restarted manager (the same CA) and a new peer enrolls
/// with the token issued before the restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_download_survives_a_manager_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), 1, &[("DFDAEMON__BACK_TO_SOURCE__CONCURRENCY", "1")]);
    // Members renew every ~10 s, and have ~5 s between renewal and expiry
    // to reach the manager again.
    o.manager_env.push(("MANAGER__TLS__CERT_VALIDITY".into(), "15s".into()));
    let mut cluster = Cluster::start(&o).await.unwrap();
    let origin = Origin::start().await;
    let size = 12 * MIB;
    let data = random_bytes(size, 146);
    let expected = sha256_hex(&data);
    origin.add("/slow", Content::Bytes(data), Behavior { rate_limit: Some(MIB as u64), ..Default::default() });
    let url = origin.url("/slow");

    let out = dir.path().join("out");
    let members = |c: &Cluster| [c.scheduler.log_tail(100_000), seed(c).log(), c.peers[0].log()].map(|l| renewals(&l));
    let peer = &cluster.peers[0];
    let manager = cluster.manager.as_mut().expect("the cluster has a manager");
    let download = peer.dfget(&url, &out, &["--timeout", "2m"]);
    let restart = async {
        let a_quarter = wait_until("a quarter of the file at the origin", Duration::from_secs(30), || async {
            origin.total_body_bytes() > (size / 4) as u64
        });
        a_quarter.await.unwrap();
        manager.kill();
        manager.restart().await.unwrap();
        origin.total_body_bytes()
    };
    let (r, sent_at_restart) = tokio::join!(download, restart);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, cluster.logs());
    assert_eq!(sha256_file(&out).unwrap(), expected);
    assert!(sent_at_restart < size as u64, "the manager was back before the download ended\n{}", cluster.logs());
    assert!(!r.stderr.contains("peers 0 B"), "bytes came from the swarm: {}", r.stderr);

    let at_restart = members(&cluster);
    let renewed = wait_until("every member to renew with the restarted manager", Duration::from_secs(20), || {
        let now = members(&cluster);
        async move { now.iter().zip(at_restart).all(|(n, r)| *n > r) }
    });
    renewed.await.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let late = DaemonProcess::start(cluster.daemon_options("peer-late", false, &[])).await.unwrap();
    let out = dir.path().join("late");
    download_from_the_swarm(&cluster, &late, &url, &out, &expected).await;
}

/// A peer dfdaemon in `dir/name` that enrolls with `join` at `manager`.
fn joining_daemon(dir: &Path, name: &str, join: &pki::Join, manager: &ManagerProcess) -> DaemonOptions {
    let mut d = DaemonOptions::new(bin_dir().join("dfdaemon"), dir.join(name));
    d.tls = join.env("DFDAEMON");
    d.tls.push(("DFDAEMON__HOST__HOSTNAME".into(), name.into()));
    d.args = vec!["--manager".into(), manager.grpc_addr.to_string()];
    d
}

/// The start of `dir/name` failed because the manager refused its join
/// token: it exited non-zero and its log says so.
fn assert_join_refused(dir: &Path, name: &str, e: anyhow::Error) {
    let text = format!("{e:#}");
    assert!(text.contains("exit status: ") && !text.contains("exit status: 0"), "{name} exits non-zero: {text}");
    let log = std::fs::read_to_string(dir.join(name).join("dfdaemon.log")).unwrap();
    assert!(log.contains("refused the join token"), "{name}'s log says why:\n{log}");
}

/// Join tokens: one revoked by root no longer enrolls (the member exits
/// non-zero saying the manager refused its token), and one with
/// `max_uses: 1` enrolls one member, not two.
#[tokio::test(flavor = "multi_thread")]
async fn revoked_and_used_up_join_tokens_do_not_enroll() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir();
    let manager = ManagerProcess::start(&bin.join("manager"), &dir.path().join("manager"), &[], "darter-test-root")
        .await
        .unwrap();
    let daemon = |name: &str, join: &pki::Join| joining_daemon(dir.path(), name, join, &manager);
    let refused = |name: &str, e: anyhow::Error| assert_join_refused(dir.path(), name, e);

    let revoked = manager.join("peer", None).await.unwrap();
    let id = revoked.token.split('.').next().unwrap();
    let (status, body) = manager.rest("DELETE", &format!("/api/v1/join-tokens/{id}"), None).await.unwrap();
    assert_eq!(status, 204, "{body}");
    refused("peer-revoked", DaemonProcess::start(daemon("peer-revoked", &revoked)).await.unwrap_err());

    let once = manager
        .create_join_token(&serde_json::json!({ "role": "peer", "max_uses": 1, "description": "once" }))
        .await
        .unwrap();
    let first = DaemonProcess::start(daemon("peer-first", &once)).await;
    assert!(first.is_ok(), "the first member enrolls: {:?}", first.err());
    refused("peer-second", DaemonProcess::start(daemon("peer-second", &once)).await.unwrap_err());
}

/// A join token made with `ttl: "never"` (what the console's Helm values
/// for another cluster default to: its nodes come and go) enrolls members
/// and is listed with the year-9999 expiry the console shows as "never";
/// revoking it stops it like any other. The same manager restarted with
/// `tls.non_expiring_tokens: false` refuses to make one, naming the field,
/// and a token made so earlier enrolls no one any more.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_token_that_never_expires_enrolls_until_revoked() {
    const NEVER: i64 = 253_402_300_799_999;
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir();
    let mut manager = ManagerProcess::start(&bin.join("manager"), &dir.path().join("manager"), &[], "darter-test-root")
        .await
        .unwrap();
    let daemon =
        |name: &str, join: &pki::Join, manager: &ManagerProcess| joining_daemon(dir.path(), name, join, manager);
    let refused = |name: &str, e: anyhow::Error| assert_join_refused(dir.path(), name, e);
    let never = serde_json::json!({ "role": "peer", "ttl": "never" });
    let join = manager.create_join_token(&never).await.unwrap();
    let kept = manager.create_join_token(&never).await.unwrap();
    let id = join.token.split('.').next().unwrap().to_owned();
    let (status, tokens) = manager.rest("GET", "/api/v1/join-tokens", None).await.unwrap();
    assert_eq!(status, 200, "{tokens}");
    let listed = tokens.as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).expect("listed").clone();
    assert_eq!(listed["expires_at"], NEVER, "{listed}");
    let member = DaemonProcess::start(daemon("peer-never", &join, &manager)).await;
    assert!(member.is_ok(), "a member enrolls with it: {:?}", member.err());
    drop(member);
    let (status, body) = manager.rest("DELETE", &format!("/api/v1/join-tokens/{id}"), None).await.unwrap();
    assert_eq!(status, 204, "{body}");
    refused("peer-after-revoke", DaemonProcess::start(daemon("peer-after-revoke", &join, &manager)).await.unwrap_err());

    manager.terminate().await.unwrap();
    let env = [("MANAGER__TLS__NON_EXPIRING_TOKENS".to_owned(), "false".to_owned())];
    let strict = ManagerProcess::start(&bin.join("manager"), &dir.path().join("manager"), &env, "darter-test-root")
        .await
        .unwrap();
    let (status, body) = strict.rest("POST", "/api/v1/join-tokens", Some(&never)).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("tls.non_expiring_tokens"), "{body}");
    refused("peer-turned-off", DaemonProcess::start(daemon("peer-turned-off", &kept, &strict)).await.unwrap_err());
}

/// Piece data: a parent serves a piece only with a grant from a scheduler
/// of its cluster for that task and that parent. Without one, with one
/// signed by a peer, by another CA's scheduler, or for another task or
/// parent, the piece port answers 403 and sends nothing; a scheduler's
/// grant gets the piece.
#[tokio::test(flavor = "multi_thread")]
async fn a_parent_serves_pieces_only_to_granted_children() {
    use darter_common::tls::grant::Issuer;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 1, &[])).await.unwrap();
    let manager = manager(&cluster);
    let origin = Origin::start().await;
    let data = random_bytes(4 * MIB, 148);
    origin.add("/blob", Content::Bytes(data.clone()), Behavior::default());
    let url = origin.url("/blob");
    download_from_the_swarm(&cluster, &cluster.peers[0], &url, &dir.path().join("out"), &sha256_hex(&data)).await;
    let (seed, task) = (seed(&cluster), task_id(&url));
    let seed_host = host_id("seed", seed);
    let pieces = seed.piece_addr();
    let grant_from = |transport: &Transport, task: &str, parent: &str| {
        let credentials = transport.credentials().expect("TLS credentials").clone();
        Issuer::new(credentials, Duration::from_secs(60)).issue(task, parent, "child").unwrap()
    };

    let (status, body) = get_piece(pieces, &task, 0, None);
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (403, "piece grant required"));
    // A refusal ends even a kept-alive connection (read_all returns at its end).
    let kept_alive = {
        use std::io::Write as _;
        let mut conn = std::net::TcpStream::connect(pieces).unwrap();
        conn.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        let request = format!("GET /v1/tasks/{task}/pieces/0 HTTP/1.1\r\nHost: x\r\n\r\n");
        conn.write_all(request.as_bytes()).unwrap();
        read_all(&mut conn)
    };
    let head = String::from_utf8_lossy(&kept_alive.0).to_lowercase();
    assert!(head.starts_with("http/1.1 403") && head.contains("connection: close"), "{head}");
    assert!(kept_alive.1.is_none(), "closed by the parent, not timed out: {:?}", kept_alive.1);
    let peer = manager.enroll(Role::Peer, "peer-x").await.unwrap();
    let stranger = TestCa::new().transport(&pki::identity(Role::Scheduler, "scheduler"));
    let scheduler = manager.enroll(Role::Scheduler, "scheduler-x").await.unwrap();
    let other_task = task_id(&origin.url("/other"));
    for (what, grant) in [
        ("a peer's grant", grant_from(&peer, &task, &seed_host)),
        ("another CA's scheduler's grant", grant_from(&stranger, &task, &seed_host)),
        ("a grant for another task", grant_from(&scheduler, &other_task, &seed_host)),
        ("a grant for another parent", grant_from(&scheduler, &task, &host_id("peer-0", &cluster.peers[0]))),
        ("garbage", "01deadbeef".to_string()),
    ] {
        let (status, body) = get_piece(pieces, &task, 0, Some(&grant));
        assert_eq!(status, 403, "{what}: {}", String::from_utf8_lossy(&body));
    }
    let (status, body) = get_piece(pieces, &task, 0, Some(&grant_from(&scheduler, &task, &seed_host)));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, data[..body.len()], "the first piece of the origin's bytes");
    assert!(!body.is_empty());
}

/// Integrity: a seed that serves other bytes than the content's digest (with
/// piece digests that match its own bytes, as a lying seed's would) cannot
/// make a peer keep them. The peer's pieces all verify against the seed's
/// references, and the whole-content check still refuses: dfget exits 5 and
/// nothing is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_lying_seed_cannot_complete_a_download_whose_digest_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 1, &[])).await.unwrap();
    let origin = Origin::start().await;
    let truth = random_bytes(4 * MIB, 149);
    let mut served = truth.to_vec();
    served[MIB + 7] ^= 0xff;
    // The seed is the cluster's only origin fetcher: what it got is what it
    // serves and what it vouches for.
    origin.add("/blob", Content::Bytes(served.into()), Behavior::default());
    let out = dir.path().join("out");
    let digest = format!("sha256:{}", sha256_hex(&truth));
    let r = cluster.peers[0].dfget(&origin.url("/blob"), &out, &["--digest", &digest, "--timeout", "2m"]).await;
    assert_eq!(r.code, 5, "refused for its digest: {}\n{}", r.stderr, cluster.logs());
    assert!(r.stderr.contains("digest"), "{}", r.stderr);
    assert!(!out.exists(), "nothing is kept");
}

/// Piece encryption (`upload.encrypt`): a cluster whose daemons encrypt
/// piece traffic downloads through the swarm. Its piece ports answer only
/// TLS from members of the cluster: plain HTTP gets no answer; TLS without a
/// certificate, another CA's certificate and a scheduler's are refused in
/// the handshake; and a member still needs a grant.
#[tokio::test(flavor = "multi_thread")]
async fn encrypted_piece_ports_serve_members_with_grants_only() {
    use darter_common::tls::grant::Issuer;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&options(dir.path(), 1, &[("DFDAEMON__UPLOAD__ENCRYPT", "true")])).await.unwrap();
    let manager = manager(&cluster);
    let origin = Origin::start().await;
    let data = random_bytes(4 * MIB, 150);
    origin.add("/blob", Content::Bytes(data.clone()), Behavior::default());
    let url = origin.url("/blob");
    download_from_the_swarm(&cluster, &cluster.peers[0], &url, &dir.path().join("out"), &sha256_hex(&data)).await;
    let (seed, task) = (seed(&cluster), task_id(&url));
    let pieces = seed.piece_addr();

    let plain = {
        use std::io::Write as _;
        let mut conn = std::net::TcpStream::connect(pieces).unwrap();
        conn.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        conn.write_all(piece_request(&task, 0, None).as_bytes()).unwrap();
        read_all(&mut conn).0
    };
    assert!(!plain.starts_with(b"HTTP/"), "plain HTTP gets no answer: {}", String::from_utf8_lossy(&plain));
    for (who, presents) in strangers(Role::Peer).into_iter().skip(1) {
        let config = caller::tls_config(&presents, PIECES_ALPN).expect("a TLS client");
        let refused = get_piece_tls(pieces, config, &task, 0, None);
        assert!(refused.as_ref().is_err_and(|e| e.contains(why(who, false))), "{who}: {refused:?}");
    }
    let scheduler = manager.enroll(Role::Scheduler, "scheduler-x").await.unwrap();
    let wrong_role = get_piece_tls(pieces, member_pieces_config(&scheduler), &task, 0, None);
    assert!(wrong_role.is_err(), "a scheduler is not a child: {wrong_role:?}");

    let member = member_pieces_config(&manager.enroll(Role::Peer, "peer-x").await.unwrap());
    let (status, _) = get_piece_tls(pieces, member.clone(), &task, 0, None).unwrap();
    assert_eq!(status, 403, "a member without a grant");
    let grant = Issuer::new(scheduler.credentials().unwrap().clone(), Duration::from_secs(60))
        .issue(&task, &host_id("seed", seed), "peer-x")
        .unwrap();
    let (status, body) = get_piece_tls(pieces, member, &task, 0, Some(&grant)).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(!body.is_empty() && body == data[..body.len()], "the first piece of the origin's bytes, over TLS");
}

/// The probes above are attacks that work: against a cluster in plaintext
/// mode (what every cluster was before mutual TLS) a stranger registers a
/// seed, announces a seed host, makes the seed fetch a loopback secret,
/// removes another host, and marks the real seed inactive by closing a
/// keepalive in its name.
#[tokio::test(flavor = "multi_thread")]
async fn the_attacks_succeed_against_a_plaintext_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), 1, &[]);
    o.plaintext = true;
    let cluster = Cluster::start(&o).await.unwrap();
    let manager = manager(&cluster);
    let origin = Origin::start().await;
    origin.add("/secret", Content::Bytes(b"metadata-token-123".as_slice().into()), Behavior::default());
    let data = random_bytes(4 * MIB, 147);
    origin.add("/a", Content::Bytes(data.clone()), Behavior::default());
    let victim = &cluster.peers[0];
    download_from_the_swarm(&cluster, victim, &origin.url("/a"), &dir.path().join("a"), &sha256_hex(&data)).await;
    let plaintext = |addr| caller::channel(addr, &Presents::Plaintext);
    let evil = origin.addr();
    // Piece data: anyone who reaches a piece port fetches.
    let (status, _) = get_piece(seed(&cluster).piece_addr(), &task_id(&origin.url("/a")), 0, None);
    assert_eq!(status, 200, "a plaintext parent serves without a grant");

    // Attack 1.
    register_seed(plaintext(manager.grpc_addr), "evil", evil).await.unwrap();
    let id = format!("evil-127.0.0.1-{}", evil.port());
    announce_host(plaintext(cluster.scheduler.addr), &id, "evil", evil, cpb::HostType::Seed).await.unwrap();
    report_digest(plaintext(cluster.scheduler.addr), &id, &origin.url("/poisoned")).await.unwrap();
    // Attack 2.
    trigger(plaintext(seed(&cluster).upload_addr()), &origin.url("/secret")).await.unwrap();
    wait_until("the seed to fetch the secret", Duration::from_secs(10), || async {
        origin.stats("/secret").requests > 0
    })
    .await
    .unwrap();
    // Attack 7.
    leave_host(plaintext(cluster.scheduler.addr), &host_id("peer-0", victim)).await.unwrap();
    let rows = seed_rows(manager).await;
    let row = rows.iter().find(|r| r["hostname"] == "seed").unwrap_or_else(|| panic!("the seed's row: {rows:?}"));
    let (seed_id, seed_ip) = (row["id"].as_u64().unwrap(), row["ip"].as_str().unwrap().to_owned());
    keep_alive(plaintext(manager.grpc_addr), seed_id, "seed", &seed_ip).await.unwrap();
    let rows = seed_rows(manager).await;
    let row = rows.iter().find(|r| r["hostname"] == "seed").unwrap();
    assert_eq!(row["state"], "inactive", "a stranger's closed keepalive marked the seed inactive: {row}");
}
