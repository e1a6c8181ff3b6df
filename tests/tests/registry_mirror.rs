//! Issue 5 end to end: dfdaemon as the registry mirror of real containerds.
//!
//! Every test runs a real `docker-registry` (the origin), a swarm of real
//! processes (a scheduler, a seed dfdaemon and one dfdaemon per node, each
//! node's mirror on its own port) and one real containerd per node (own root,
//! state and socket) whose `certs.d/<registry>/hosts.toml` was written by
//! `dfdaemon containerd-config`, the way a node is set up (and undone by
//! `--restore`, the way it is uninstalled). Pulls are
//! `ctr images pull --hosts-dir`, which resolves and fetches client-side.
//!
//! containerd falls back to the registry silently when its mirror fails, so a
//! pull succeeding proves nothing about the mirror. What the registry served,
//! and to whom, comes from its access log: blob fetches by dfdaemon carry
//! `darter-dfdaemon/...` as user agent, containerd's own `containerd/...`.
//! dfdaemon fetches a blob as a one-byte probe then piece-sized range
//! requests, so "served once" is counted in bytes: the GETs of a blob add up
//! to its size (plus the probe's byte), not to a multiple of it.
//!
//! Needs containerd, docker-registry, skopeo, umoci, apache2-utils, openssl
//! and root; without them every test prints SKIPPED and passes, except under
//! CI (`CI` set), where it fails. The Darter binaries come from
//! `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use testkit::cluster::{Cluster, ClusterOptions, ExternalManager};
use testkit::containerd::{ContainerdProcess, PullOptions, Pulled, write_hosts_toml};
use testkit::dfdaemon::{DaemonProcess, bin_dir};
use testkit::eventually::wait_until;
use testkit::oci::TestImage;
use testkit::registry::{AccessLogEntry, Credentials, RegistryOptions, RegistryProcess};
use testkit::tool::{registry_kit_or_skip, run};

/// Limit for one pull of the small image.
const SMALL_PULL: Duration = Duration::from_secs(180);
/// Limit for one pull of the large image (200 MiB, debug builds, 2 cores).
const LARGE_PULL: Duration = Duration::from_secs(600);
/// How long the registry may take to log a request after answering it.
const LOG_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit for `dfdaemon containerd-config`.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(30);

/// User agent prefixes in the registry's access log.
const DFDAEMON_UA: &str = "darter-dfdaemon/";
const CONTAINERD_UA: &str = "containerd/";

async fn images() -> (TestImage, TestImage) {
    let started = Instant::now();
    let small = TestImage::small().await.unwrap();
    let large = TestImage::large().await.unwrap();
    println!("images ready in {:.1?} (cached after the first build)", started.elapsed());
    (small, large)
}

// ---------------------------------------------------------------------------
// The swarm and its nodes.

/// Environment every dfdaemon needs to reach `registry`: plain HTTP for it,
/// or its (self-signed) certificate as an extra root; and, as for a private
/// registry on a private network, the registry allow-listed for the mirror,
/// which refuses loopback destinations otherwise.
fn registry_env(registry: &RegistryProcess) -> Vec<(String, String)> {
    let allowed = ("DFDAEMON__PROXY__ALLOWED_DESTINATIONS".to_owned(), format!("[\"{}\"]", registry.host()));
    let reach = match &registry.ca_cert {
        Some(ca) => (
            "DFDAEMON__BACK_TO_SOURCE__CA_CERTS".into(),
            format!("[{}]", serde_json::to_string(&ca.to_string_lossy()).unwrap()),
        ),
        None => ("DFDAEMON__PROXY__INSECURE_REGISTRIES".into(), format!("[\"{}\"]", registry.host())),
    };
    vec![reach, allowed]
}

/// A scheduler and a seed dfdaemon (no peers yet), all able to reach `registry`.
async fn swarm(dir: &Path, registry: &RegistryProcess) -> Cluster {
    swarm_with(dir, registry_env(registry)).await
}

/// A scheduler and a seed dfdaemon (no peers yet), every dfdaemon with `env`.
async fn swarm_with(dir: &Path, env: Vec<(String, String)>) -> Cluster {
    let mut options = ClusterOptions::new(dir, &bin_dir(), 0);
    options.daemon_env.extend(env);
    Cluster::start(&options).await.unwrap_or_else(|e| panic!("start the swarm: {e:#}"))
}

/// One node: its dfdaemon (mirror on `proxy`) and its containerd,
/// configured by `dfdaemon containerd-config` in `certs_d`.
struct Node {
    name: String,
    daemon: DaemonProcess,
    containerd: ContainerdProcess,
    certs_d: PathBuf,
    proxy: SocketAddr,
}

impl Node {
    /// Starts node `i`: a peer dfdaemon in `cluster` with its mirror on a
    /// port the kernel picks, a containerd, and the hosts.toml pointing that containerd
    /// at that mirror in front of `registry`.
    async fn start(cluster: &Cluster, dir: &Path, i: usize, registry: &RegistryProcess) -> Self {
        Self::start_with(cluster, dir, i, registry, None).await
    }

    /// Like [`Node::start`], with containerd pointed at `mirror` instead of
    /// its dfdaemon's mirror when given.
    async fn start_with(
        cluster: &Cluster,
        dir: &Path,
        i: usize,
        registry: &RegistryProcess,
        mirror: Option<&str>,
    ) -> Self {
        let name = format!("node-{i}");
        let mut options = cluster.daemon_options(&name, false, &[]);
        options.proxy_port = Some(0);
        let daemon = DaemonProcess::start(options).await.unwrap_or_else(|e| panic!("start {name}'s dfdaemon: {e:#}"));
        let proxy = daemon.proxy_addr().expect("started with a proxy");
        let containerd = ContainerdProcess::start(&dir.join(format!("ctrd-{i}")))
            .await
            .unwrap_or_else(|e| panic!("start {name}'s containerd: {e:#}"));
        let certs_d = dir.join(format!("certs-{i}"));
        let own = format!("http://{proxy}");
        containerd_config(&certs_d, registry, mirror.unwrap_or(&own)).await;
        Self { name, daemon, containerd, certs_d, proxy }
    }

    /// Pull options through this node's hosts.toml.
    fn options(&self, credentials: Option<&Credentials>, timeout: Duration) -> PullOptions {
        PullOptions { hosts_dir: Some(self.certs_d.clone()), credentials: credentials.cloned(), timeout }
    }

    /// Pulls `reference` through the node's hosts.toml and checks that the
    /// unpacked files are `image`'s.
    async fn pull_checked(
        &self,
        reference: &str,
        image: &TestImage,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Pulled {
        let pulled = self
            .containerd
            .pull(reference, &self.options(credentials, timeout))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", self.name, self.logs()));
        self.check_unpacked(&pulled, image).await;
        pulled
    }

    async fn check_unpacked(&self, pulled: &Pulled, image: &TestImage) {
        assert_eq!(pulled.chain_id, image.chain_id(), "{}: chain ID of the {} image", self.name, image.name);
        let files = self.containerd.rootfs_files(&pulled.chain_id).await.unwrap();
        assert!(
            files == image.files,
            "{}: unpacked files of the {} image differ:\n got {files:#?}\nwant {:#?}",
            self.name,
            image.name,
            image.files
        );
    }

    /// `dfdaemon_proxy_requests_total` by `(mode, route)`.
    async fn proxy_requests(&self) -> BTreeMap<(String, String), u64> {
        proxy_requests(self.daemon.metrics_addr()).await
    }

    /// Bytes in containerd's unfinished downloads (its ingests).
    fn ingested_bytes(&self) -> u64 {
        let ingest = self.containerd.dir.join("root/io.containerd.content.v1.content/ingest");
        std::fs::read_dir(ingest)
            .map(|entries| {
                entries.flatten().filter_map(|e| e.path().join("data").metadata().ok()).map(|m| m.len()).sum()
            })
            .unwrap_or(0)
    }

    fn logs(&self) -> String {
        format!(
            "--- {} containerd ---\n{}\n--- {} dfdaemon ---\n{}",
            self.name,
            self.containerd.log_tail(15),
            self.name,
            self.daemon.log_tail(25)
        )
    }
}

/// Runs `dfdaemon containerd-config` for `registry` with `mirror` in front,
/// writing under `certs_d` (with `--ca` for an HTTPS registry with a
/// private CA, `--insecure` for a plain HTTP one, and `--restore` after
/// `extra` when given); returns the hosts.toml.
async fn containerd_config_run(certs_d: &Path, registry: &RegistryProcess, mirror: &str, extra: &[&str]) -> PathBuf {
    let host = registry.host();
    let mut cmd = tokio::process::Command::new(bin_dir().join("dfdaemon"));
    cmd.arg("containerd-config").args(["--registry", &host, "--mirror", mirror]).arg("--certs-dir").arg(certs_d);
    match &registry.ca_cert {
        Some(ca) => cmd.arg("--ca").arg(format!("{host}={}", ca.display())),
        None => cmd.args(["--insecure", &host]),
    };
    cmd.args(extra);
    run(&mut cmd, CONFIG_TIMEOUT).await.unwrap_or_else(|e| panic!("{e:#}"));
    certs_d.join(&host).join("hosts.toml")
}

/// [`containerd_config_run`] writing the files, checked.
async fn containerd_config(certs_d: &Path, registry: &RegistryProcess, mirror: &str) -> PathBuf {
    let path = containerd_config_run(certs_d, registry, mirror, &[]).await;
    let toml = std::fs::read_to_string(&path).unwrap();
    assert!(toml.contains(&format!("server = \"{}\"", registry.url())), "{toml}");
    assert!(toml.contains(&format!("[host.\"{mirror}\"]")), "{toml}");
    if let Some(ca) = &registry.ca_cert {
        assert!(toml.contains(&format!("ca = \"{}\"", ca.display())), "{toml}");
    }
    path
}

/// `dfdaemon_proxy_requests_total` by `(mode, route)` from the metrics page
/// at `addr` (empty when it cannot be read).
async fn proxy_requests(addr: SocketAddr) -> BTreeMap<(String, String), u64> {
    let page = testkit::metrics::scrape(addr).await.unwrap_or_default();
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_owned())
    };
    page.lines()
        .filter(|l| l.starts_with("dfdaemon_proxy_requests_total{"))
        .filter_map(|l| {
            let value = l.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some(((label(l, "mode")?, label(l, "route")?), value))
        })
        .collect()
}

fn count(metrics: &BTreeMap<(String, String), u64>, mode: &str, route: &str) -> u64 {
    metrics.get(&(mode.to_owned(), route.to_owned())).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// What the registry served.

/// Size of each blob a pull of `image` fetches (config and layers), by digest.
fn blob_sizes(image: &TestImage) -> BTreeMap<String, u64> {
    image
        .blob_digests()
        .into_iter()
        .map(|d| {
            let path = image.layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
            let size = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len();
            (d, size)
        })
        .collect()
}

/// The registry's answered GETs (200/206) of blob `digest`.
fn blob_fetches(registry: &RegistryProcess, digest: &str) -> Vec<AccessLogEntry> {
    registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && matches!(r.status, 200 | 206) && r.blob_digest() == Some(digest))
        .collect()
}

/// Body bytes of `fetches` made by clients whose user agent starts with `agent`.
fn bytes_to(fetches: &[AccessLogEntry], agent: &str) -> u64 {
    fetches.iter().filter(|r| r.user_agent.starts_with(agent)).map(|r| r.bytes).sum()
}

fn describe(fetches: &[AccessLogEntry]) -> String {
    fetches.iter().map(|r| format!("  {} {} {} B {:?}\n", r.method, r.status, r.bytes, r.user_agent)).collect()
}

/// Asserts that the registry served each blob of `image` exactly once, to
/// dfdaemon (the GETs of a blob add up to its size, plus dfdaemon's one-byte
/// probe) and never to containerd directly.
async fn assert_each_blob_served_once_to_dfdaemon(registry: &RegistryProcess, image: &TestImage) {
    let sizes = blob_sizes(image);
    let logged = wait_until("the registry to log every blob fetched", LOG_TIMEOUT, || async {
        sizes.iter().all(|(d, size)| bytes_to(&blob_fetches(registry, d), DFDAEMON_UA) >= *size)
    })
    .await;
    for (digest, size) in &sizes {
        let fetches = blob_fetches(registry, digest);
        let (darter, others) = (
            bytes_to(&fetches, DFDAEMON_UA),
            fetches.iter().filter(|r| !r.user_agent.starts_with(DFDAEMON_UA)).count(),
        );
        assert!(
            logged.is_ok() && (*size..=size + 1).contains(&darter) && others == 0,
            "{} blob {digest} ({size} B) was not served exactly once, to dfdaemon: {darter} B to dfdaemon, \
             {others} fetches by others:\n{}",
            image.name,
            describe(&fetches)
        );
    }
}

/// Asserts that containerd fetched each blob of `image` from the registry
/// itself, exactly once and whole, and dfdaemon none.
async fn assert_each_blob_fetched_once_by_containerd(registry: &RegistryProcess, image: &TestImage) {
    let sizes = blob_sizes(image);
    let logged = wait_until("the registry to log every blob fetched", LOG_TIMEOUT, || async {
        sizes.keys().all(|d| !blob_fetches(registry, d).is_empty())
    })
    .await;
    for (digest, size) in &sizes {
        let fetches = blob_fetches(registry, digest);
        let whole = fetches.len() == 1
            && fetches[0].user_agent.starts_with(CONTAINERD_UA)
            && fetches[0].status == 200
            && fetches[0].bytes == *size;
        assert!(
            logged.is_ok() && whole,
            "{digest} ({size} B) not fetched once whole by containerd:\n{}",
            describe(&fetches)
        );
    }
}

// ---------------------------------------------------------------------------
// A recording pass-through in front of a mirror.

/// One request a [`Tap`] passed on, with the answer's head.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    status: u16,
    content_range: Option<String>,
    served_by: Option<String>,
}

type TapBody = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// An HTTP pass-through on loopback in front of a mirror that records every
/// request's method, path and `Range` and the answer's status, so a test can
/// see what containerd asked of its mirror. Bodies stream through untouched;
/// a body cut upstream is cut here too.
struct Tap {
    url: String,
    upstream: Arc<std::sync::OnceLock<SocketAddr>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers that belong to one connection.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"];

impl Tap {
    /// A tap listening on a port the kernel picks; it answers 502 until given its
    /// upstream ([`Tap::forward_to`]).
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = Arc::new(std::sync::OnceLock::new());
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let (log, to) = (seen.clone(), upstream.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, log, to) = (client.clone(), log.clone(), to.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| Self::forward(client.clone(), to.clone(), log.clone(), req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Self { url, upstream, seen, task }
    }

    /// Passes requests on to the mirror on `port` from now on.
    fn forward_to(&self, port: u16) {
        self.upstream.set(([127, 0, 0, 1], port).into()).expect("the tap's upstream is set once");
    }

    async fn forward(
        client: Client<HttpConnector, Empty<Bytes>>,
        upstream: Arc<std::sync::OnceLock<SocketAddr>>,
        log: Arc<Mutex<Vec<Seen>>>,
        req: Request<Incoming>,
    ) -> Result<Response<TapBody>, Infallible> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        // Unset, a port nobody listens on: the request fails with 502.
        let upstream = upstream.get().copied().unwrap_or_else(|| ([127, 0, 0, 1], 1).into());
        let mut out = Request::builder().method(req.method().clone()).uri(format!("http://{upstream}{path}"));
        for (name, value) in req.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                out = out.header(name, value);
            }
        }
        let header = |h: &http::HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut seen = Seen {
            method: req.method().to_string(),
            path,
            range: header(req.headers(), "range"),
            status: 0,
            content_range: None,
            served_by: None,
        };
        let answer = match client.request(out.body(Empty::new()).unwrap()).await {
            Ok(answer) => answer,
            Err(e) => {
                seen.status = 502;
                log.lock().unwrap().push(seen);
                let mut resp =
                    Response::new(Full::new(Bytes::from(format!("tap: {e}"))).map_err(|n| match n {}).boxed());
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                return Ok(resp);
            }
        };
        let (mut parts, body) = answer.into_parts();
        seen.status = parts.status.as_u16();
        seen.content_range = header(&parts.headers, "content-range");
        seen.served_by = header(&parts.headers, "x-darter-served-by");
        log.lock().unwrap().push(seen);
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        Ok(Response::from_parts(parts, body.map_err(|e| Box::new(e) as _).boxed()))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// The tests.

/// Pulls `reference` on every node at once; returns each pull's time and the
/// wall time of the whole.
async fn pull_at_once(
    nodes: &[Node],
    reference: &str,
    image: &TestImage,
    timeout: Duration,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let pulls = futures::future::join_all(nodes.iter().map(|n| n.pull_checked(reference, image, None, timeout))).await;
    let wall = started.elapsed();
    (pulls.into_iter().map(|p| p.elapsed).collect(), wall)
}

fn report(what: &str, image: &TestImage, times: &[Duration], wall: Duration) {
    let bytes: u64 = image.layers.iter().map(|l| l.size).sum();
    let each: Vec<String> = times.iter().map(|t| format!("{:.2}s", t.as_secs_f64())).collect();
    println!(
        "FIGURES {what}: {} image ({:.1} MiB of layers), {} pulls at once: [{}], wall {:.2}s",
        image.name,
        bytes as f64 / f64::from(1 << 20),
        times.len(),
        each.join(", "),
        wall.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_pulling_at_once_through_their_mirrors_get_each_blob_from_the_registry_once() {
    if !registry_kit_or_skip("three_nodes_pulling_at_once_through_their_mirrors_get_each_blob_from_the_registry_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let small_ref = small.push(&registry, "darter/small").await.unwrap();
    let large_ref = large.push(&registry, "darter/large").await.unwrap();
    let cluster = swarm(dir.path(), &registry).await;
    let nodes = futures::future::join_all((0..3).map(|i| Node::start(&cluster, dir.path(), i, &registry))).await;

    // The small multi-layer image, on all three nodes at once.
    let (times, wall) = pull_at_once(&nodes, &small_ref, &small, SMALL_PULL).await;
    report("through the mirror", &small, &times, wall);
    assert_each_blob_served_once_to_dfdaemon(&registry, &small).await;
    let blobs = small.blob_digests().len() as u64;
    for node in &nodes {
        let m = node.proxy_requests().await;
        assert!(
            count(&m, "mirror", "p2p") >= blobs && count(&m, "mirror", "fallback") == 0,
            "{}: every blob through P2P, none fell back: {m:?}",
            node.name
        );
    }

    // The large image (one 200 MiB layer), on all three nodes at once.
    let (times, wall) = pull_at_once(&nodes, &large_ref, &large, LARGE_PULL).await;
    report("through the mirror", &large, &times, wall);
    assert_each_blob_served_once_to_dfdaemon(&registry, &large).await;
    for node in &nodes {
        let m = node.proxy_requests().await;
        assert!(
            count(&m, "mirror", "p2p") >= blobs + 2 && count(&m, "mirror", "fallback") == 0,
            "{}: every blob through P2P, none fell back: {m:?}",
            node.name
        );
        // Manifests and HEADs pass straight through, once per node and image.
        assert!(count(&m, "mirror", "upstream") >= 4, "{}: {m:?}", node.name);
    }
    // Manifests are relayed, once per node and image: HEAD and GET, each
    // with containerd's user agent (the relay keeps the client's).
    let manifests = registry.requests().into_iter().filter(|r| r.path.contains("/manifests/"));
    let by_containerd = manifests.filter(|r| r.user_agent.starts_with(CONTAINERD_UA)).count();
    assert_eq!(by_containerd, 3 * 2 * 2, "manifest requests relayed to the registry");

    // For comparison: three fresh containerds pulling both images from the
    // registry directly, at once (the same machine, the same CPUs).
    let direct_certs = dir.path().join("certs-direct");
    write_hosts_toml(&direct_certs, &registry, &[]).unwrap();
    let direct_dirs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("ctrd-direct-{i}"))).collect();
    let direct = futures::future::join_all(direct_dirs.iter().map(|d| ContainerdProcess::start(d))).await;
    let direct: Vec<ContainerdProcess> = direct.into_iter().map(|c| c.unwrap()).collect();
    for (reference, image, timeout) in [(&small_ref, &small, SMALL_PULL), (&large_ref, &large, LARGE_PULL)] {
        let options = PullOptions { timeout, ..PullOptions::with_hosts_dir(&direct_certs) };
        let started = Instant::now();
        let pulls = futures::future::join_all(direct.iter().map(|c| c.pull(reference, &options))).await;
        let wall = started.elapsed();
        let times: Vec<Duration> = pulls.into_iter().map(|p| p.unwrap_or_else(|e| panic!("{e:#}")).elapsed).collect();
        report("straight from the registry (baseline)", image, &times, wall);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_mirror_an_htpasswd_registry_over_https_needs_the_credentials_as_it_does_directly() {
    if !registry_kit_or_skip(
        "through_the_mirror_an_htpasswd_registry_over_https_needs_the_credentials_as_it_does_directly",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let credentials = Credentials::new("darter", "s3cret-pass-5");
    let options = RegistryOptions { htpasswd: Some(credentials.clone()), tls: true };
    // A certificate from a private CA, which dfdaemon trusts through
    // `back_to_source.ca_certs`; it refuses the kit's default self-signed
    // CA:TRUE certificate (CaUsedAsEndEntity), unlike containerd.
    let registry = RegistryProcess::start_with_private_ca(&dir.path().join("registry"), options).await.unwrap();
    let reference = small.push(&registry, "private/small").await.unwrap();
    let cluster = swarm(dir.path(), &registry).await;
    let nodes = futures::future::join_all((0..2).map(|i| Node::start(&cluster, dir.path(), i, &registry))).await;

    // Directly (no mirror) and through the mirror, without credentials and
    // with a wrong password: both fail alike, with the registry's 401.
    let direct_certs = dir.path().join("certs-direct");
    write_hosts_toml(&direct_certs, &registry, &[]).unwrap();
    let wrong = Credentials::new("darter", "wrong");
    for creds in [None, Some(&wrong)] {
        let direct = PullOptions { credentials: creds.cloned(), ..PullOptions::with_hosts_dir(&direct_certs) };
        let direct = nodes[0].containerd.pull(&reference, &direct).await.unwrap_err();
        let mirrored = nodes[0].containerd.pull(&reference, &nodes[0].options(creds, SMALL_PULL)).await.unwrap_err();
        for err in [&direct, &mirrored] {
            let text = format!("{err:#}");
            assert!(text.contains("401") && text.to_lowercase().contains("unauthorized"), "{text}");
        }
        println!("without valid credentials ({}): through the mirror: {mirrored:#}", creds.map_or("none", |_| "wrong"));
    }
    assert!(registry.blob_gets().is_empty(), "no blob left the registry: {:?}", registry.blob_gets());
    let m = nodes[0].proxy_requests().await;
    assert!(count(&m, "mirror", "upstream") >= 2, "the refused requests went through the mirror: {m:?}");

    // With the credentials, both nodes at once: the layers come through the
    // swarm, each fetched from the registry once (by whichever dfdaemon
    // fetched it, with the client's credentials).
    let started = Instant::now();
    let pulls = futures::future::join_all(
        nodes.iter().map(|n| n.pull_checked(&reference, &small, Some(&credentials), SMALL_PULL)),
    )
    .await;
    let times: Vec<Duration> = pulls.iter().map(|p| p.elapsed).collect();
    report("through the mirror, HTTPS + basic auth", &small, &times, started.elapsed());
    assert_each_blob_served_once_to_dfdaemon(&registry, &small).await;
    for node in &nodes {
        let m = node.proxy_requests().await;
        assert!(count(&m, "mirror", "p2p") >= small.blob_digests().len() as u64, "{}: {m:?}", node.name);
    }
    // The password never reaches a log.
    for (name, log) in nodes
        .iter()
        .map(|n| (n.name.clone(), n.daemon.log()))
        .chain(cluster.seed.iter().map(|s| ("seed".to_owned(), s.log())))
    {
        assert!(!log.contains(&credentials.password), "{name}'s log shows the password");
    }
}

/// Node set-up and uninstall: a node whose containerd already had its own
/// `hosts.toml` for the registry gets the mirror's (the old one kept as a
/// backup) and pulls through the mirror with no containerd restart; after
/// `--restore` its file is the old one again and the next pull goes to the
/// registry itself.
#[tokio::test(flavor = "multi_thread")]
async fn node_set_up_pulls_through_the_mirror_and_its_uninstall_restores_the_previous_hosts_toml() {
    if !registry_kit_or_skip("node_set_up_pulls_through_the_mirror_and_its_uninstall_restores_the_previous_hosts_toml")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let first = small.push(&registry, "darter/small").await.unwrap();
    let second = large.push(&registry, "darter/large").await.unwrap();
    let cluster = swarm(dir.path(), &registry).await;
    // What the node had before: its registry, directly.
    let certs_d = dir.path().join("certs-0");
    let before = format!("server = \"{}\"\n", registry.url());
    std::fs::create_dir_all(certs_d.join(registry.host())).unwrap();
    std::fs::write(certs_d.join(registry.host()).join("hosts.toml"), &before).unwrap();
    let node = Node::start(&cluster, dir.path(), 0, &registry).await;
    assert_eq!(node.certs_d, certs_d);

    node.pull_checked(&first, &small, None, SMALL_PULL).await;
    assert_each_blob_served_once_to_dfdaemon(&registry, &small).await;

    let path = containerd_config_run(&certs_d, &registry, &format!("http://{}", node.proxy), &["--restore"]).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "the previous hosts.toml is back");
    assert!(!path.with_extension("toml.bak").exists(), "no backup left behind");
    node.pull_checked(&second, &large, None, LARGE_PULL).await;
    assert_each_blob_fetched_once_by_containerd(&registry, &large).await;
}

/// CRI-O's way, with Skopeo standing in (both read `registries.conf` through
/// containers/image, which names no registry to a mirror): the node's
/// dfdaemon has a mirror port of its own for the registry
/// (`proxy.registry_mirrors`), `containerd-config --crio` writes the
/// drop-in, and a copy through it gets each blob from the registry once, by
/// dfdaemon. That port mirrors its registry only; `--restore` removes the
/// drop-in.
#[tokio::test(flavor = "multi_thread")]
async fn a_containers_image_client_pulls_through_a_registry_mirror_port_written_by_the_crio_set_up() {
    if !registry_kit_or_skip(
        "a_containers_image_client_pulls_through_a_registry_mirror_port_written_by_the_crio_set_up",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = small.push(&registry, "darter/crio").await.unwrap();
    let cluster = swarm(dir.path(), &registry).await;
    let host = registry.host();
    let mirrors = |addr: &str| format!("[{{registry: \"{host}\", addr: \"{addr}\"}}]");
    let mut options =
        cluster.daemon_options("node-crio", false, &[("DFDAEMON__PROXY__REGISTRY_MIRRORS", &mirrors("127.0.0.1:0"))]);
    options.proxy_port = Some(0);
    let daemon = DaemonProcess::start(options).await.unwrap_or_else(|e| panic!("start the node's dfdaemon: {e:#}"));
    let mirror = daemon.registry_mirror_addr(&host).expect("a listener for the registry");

    // The node set-up, with the config the daemon runs with (its port fixed).
    let conf = dir.path().join("containers/registries.conf.d/90-darter.conf");
    let set_up = |extra: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new(bin_dir().join("dfdaemon"));
        cmd.env("DFDAEMON__PROXY__REGISTRY_MIRRORS", mirrors(&mirror.to_string()));
        cmd.arg("containerd-config").arg("--crio").arg(&conf).args(["--registry", &host, "--insecure", &host]);
        cmd.args(extra);
        cmd
    };
    run(&mut set_up(&[]), CONFIG_TIMEOUT).await.unwrap_or_else(|e| panic!("{e:#}"));
    let written = std::fs::read_to_string(&conf).unwrap();
    assert!(written.contains(&format!("[[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true")), "{written}");

    let out = dir.path().join("copied");
    let mut copy = tokio::process::Command::new("skopeo");
    copy.arg("--registries-conf").arg(&conf).args(["--insecure-policy", "copy"]);
    copy.arg(format!("docker://{reference}")).arg(format!("oci:{}:copied", out.display()));
    run(&mut copy, SMALL_PULL).await.unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_tail(25)));
    for digest in small.blob_digests() {
        let blob = out.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        assert!(blob.exists(), "{digest} is not in the copied image");
    }
    assert_each_blob_served_once_to_dfdaemon(&registry, &small).await;
    let served = proxy_requests(daemon.metrics_addr()).await;
    assert!(count(&served, "mirror", "p2p") >= small.blob_digests().len() as u64, "{served:?}");

    // The port is its registry's mirror and nothing else.
    for (request, why) in [
        (format!("GET /v2/?ns=quay.io HTTP/1.1\r\nHost: {mirror}\r\nConnection: close\r\n\r\n"), "mirrors"),
        (format!("GET http://{host}/v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"), "no proxying"),
        (format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"), "no proxying"),
    ] {
        let answer = testkit::http::raw_exchange(mirror, request.as_bytes()).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains(why), "{request:?} -> {answer}");
    }

    let restored = run(&mut set_up(&["--restore"]), CONFIG_TIMEOUT).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert!(testkit::tool::text(&restored).contains("removed"), "{}", testkit::tool::text(&restored));
    assert!(!conf.exists(), "the drop-in is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_its_dfdaemon_killed_a_node_pulls_from_the_registry_itself() {
    if !registry_kit_or_skip("with_its_dfdaemon_killed_a_node_pulls_from_the_registry_itself") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = small.push(&registry, "darter/small").await.unwrap();
    let cluster = swarm(dir.path(), &registry).await;
    let mut node = Node::start(&cluster, dir.path(), 0, &registry).await;

    // Stopped for good (SIGKILL): its mirror port refuses connections.
    node.daemon.kill();
    assert!(std::net::TcpStream::connect(node.proxy).is_err(), "the mirror port is closed");
    let pulled = node.pull_checked(&reference, &small, None, SMALL_PULL).await;
    println!("FIGURES dfdaemon killed: small image pulled from the registry itself in {:.2?}", pulled.elapsed);
    assert!(pulled.output.contains("trying next host"), "ctr fell back from the mirror:\n{}", pulled.output);
    assert_each_blob_fetched_once_by_containerd(&registry, &small).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_cut_by_a_killed_dfdaemon_resumes_at_the_registry_with_a_range() {
    if !registry_kit_or_skip("a_pull_cut_by_a_killed_dfdaemon_resumes_at_the_registry_with_a_range") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, large) = images().await;
    let layer = large.layers[0].clone();
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = large.push(&registry, "darter/large").await.unwrap();
    let cluster = swarm(dir.path(), &registry).await;
    let mut node = Node::start(&cluster, dir.path(), 0, &registry).await;

    // Kill the node's dfdaemon once containerd holds an eighth of the layer.
    let pid = node.daemon.pid().unwrap();
    let threshold = layer.size / 8;
    let options = node.options(None, LARGE_PULL);
    let pull = node.containerd.pull(&reference, &options);
    let kill = async {
        wait_until("an eighth of the layer in containerd", LARGE_PULL, || async { node.ingested_bytes() >= threshold })
            .await
            .unwrap();
        testkit::process::signal(pid, "KILL").unwrap();
        node.ingested_bytes()
    };
    let (pulled, at_kill) = tokio::join!(pull, kill);
    let pulled = pulled.unwrap_or_else(|e| panic!("{e:#}\n{}", node.logs()));
    node.check_unpacked(&pulled, &large).await;
    node.daemon.kill();
    println!(
        "FIGURES dfdaemon killed mid-layer: {at_kill} B in containerd at the kill; pull done in {:.2?}",
        pulled.elapsed
    );

    // containerd's remainder came from the registry with `Range: bytes=N-`
    // (a 206 of fewer bytes than the layer); the start came through the
    // mirror (dfdaemon's fetches).
    let logged = wait_until("the registry to log containerd's resumed fetch", LOG_TIMEOUT, || async {
        blob_fetches(&registry, &layer.digest).iter().any(|r| r.user_agent.starts_with(CONTAINERD_UA))
    })
    .await;
    let fetches = blob_fetches(&registry, &layer.digest);
    let by_containerd: Vec<&AccessLogEntry> =
        fetches.iter().filter(|r| r.user_agent.starts_with(CONTAINERD_UA)).collect();
    assert!(
        logged.is_ok()
            && by_containerd.len() == 1
            && by_containerd[0].status == 206
            && by_containerd[0].bytes > 0
            && by_containerd[0].bytes <= layer.size - threshold,
        "containerd resumed the layer ({} B) at the registry with one ranged request:\n{}",
        layer.size,
        describe(&fetches)
    );
    let resumed_at = layer.size - by_containerd[0].bytes;
    println!(
        "containerd resumed at byte {resumed_at} of {}: {} B from the registry",
        layer.size, by_containerd[0].bytes
    );
    assert!(bytes_to(&fetches, DFDAEMON_UA) >= resumed_at, "the start came through dfdaemon:\n{}", describe(&fetches));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_pull_resumes_through_the_mirror_with_a_range_answered_206() {
    if !registry_kit_or_skip("an_interrupted_pull_resumes_through_the_mirror_with_a_range_answered_206") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, large) = images().await;
    let layer = large.layers[0].clone();
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = large.push(&registry, "darter/large").await.unwrap();
    let cluster = swarm(dir.path(), &registry).await;
    // The node's containerd reaches its mirror through a recording tap.
    let tap = Tap::start().await;
    let node = Node::start_with(&cluster, dir.path(), 0, &registry, Some(&tap.url)).await;
    tap.forward_to(node.proxy.port());

    // Interrupt the pull (ctr killed) once containerd holds an eighth of the layer.
    let threshold = layer.size / 8;
    let options = node.options(None, LARGE_PULL);
    tokio::select! {
        r = node.containerd.pull(&reference, &options) => {
            panic!("the pull ended before it could be interrupted: {:?}", r.map(|p| p.elapsed))
        }
        r = wait_until("an eighth of the layer in containerd", LARGE_PULL, || async { node.ingested_bytes() >= threshold }) => r.unwrap(),
    }
    let at_interrupt = node.ingested_bytes();

    // Pulled again, containerd resumes its partial layer from the mirror.
    let pulled = node.pull_checked(&reference, &large, None, LARGE_PULL).await;
    println!(
        "FIGURES interrupted pull: {at_interrupt} B in containerd at the interruption; resumed pull done in {:.2?}",
        pulled.elapsed
    );
    let seen = tap.seen();
    let blob_path = format!("/blobs/{}", layer.digest);
    let layer_gets: Vec<&Seen> = seen.iter().filter(|s| s.method == "GET" && s.path.contains(&blob_path)).collect();
    let resumed = layer_gets.iter().find(|s| s.range.as_deref().is_some_and(|r| r != "bytes=0-"));
    let Some(resumed) = resumed else { panic!("containerd never asked the mirror for a range: {layer_gets:#?}") };
    let start: u64 = resumed
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("not a `bytes=N-` range: {resumed:?}"));
    println!("containerd asked the mirror for {:?}: {resumed:?}", resumed.range);
    assert!(start > 0 && start < layer.size, "{resumed:?}");
    assert_eq!(resumed.status, 206, "{resumed:?}");
    assert_eq!(resumed.served_by.as_deref(), Some("p2p"), "{resumed:?}");
    assert_eq!(
        resumed.content_range.as_deref(),
        Some(format!("bytes {start}-{}/{}", layer.size - 1, layer.size).as_str()),
        "{resumed:?}"
    );
    // Neither pull went around the mirror, and the swarm fetched the layer once.
    assert_each_blob_served_once_to_dfdaemon(&registry, &large).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_allow_list_the_mirror_refuses_a_loopback_registry_and_containerd_pulls_from_it_itself() {
    if !registry_kit_or_skip(
        "without_an_allow_list_the_mirror_refuses_a_loopback_registry_and_containerd_pulls_from_it_itself",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = small.push(&registry, "darter/small").await.unwrap();
    // Reachable over plain HTTP, but not allow-listed: the registry is on
    // loopback, an internal destination the mirror refuses by default.
    let env: Vec<(String, String)> =
        registry_env(&registry).into_iter().filter(|(k, _)| k != "DFDAEMON__PROXY__ALLOWED_DESTINATIONS").collect();
    let cluster = swarm_with(dir.path(), env).await;
    let node = Node::start(&cluster, dir.path(), 0, &registry).await;

    let pulled = node.pull_checked(&reference, &small, None, SMALL_PULL).await;
    println!("FIGURES mirror refused: small image pulled from the registry itself in {:.2?}", pulled.elapsed);
    let m = node.proxy_requests().await;
    assert!(count(&m, "mirror", "refused") >= 1, "the mirror refused the registry: {m:?}");
    assert_eq!(count(&m, "mirror", "p2p") + count(&m, "mirror", "upstream"), 0, "nothing relayed: {m:?}");
    assert_each_blob_fetched_once_by_containerd(&registry, &small).await;
}

/// Dragonfly's multi-cluster flow: one manager; cluster A runs it, cluster
/// B (scope IDC `cluster-2`) is created through its REST API and joins it
/// with B's own join tokens, with its own scheduler and seed peer; nodes of
/// each report their IDC. The first pull in each cluster fetches each blob
/// from the registry once, through that cluster's seed; the second pull in
/// each cluster touches neither the registry nor the other cluster.
#[tokio::test(flavor = "multi_thread")]
async fn two_clusters_of_one_manager_each_pull_inside_their_own_cluster() {
    if !registry_kit_or_skip("two_clusters_of_one_manager_each_pull_inside_their_own_cluster") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = small.push(&registry, "darter/small").await.unwrap();
    let idc = |name: &str| ("DFDAEMON__HOST__IDC".to_owned(), name.to_owned());

    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let mut env_a = registry_env(&registry);
    env_a.push(idc("cluster-1"));
    let a = swarm_with(&dir_a, env_a).await;
    let manager = a.manager.as_ref().expect("cluster A runs the manager");
    let body = serde_json::json!({ "name": "cluster-b", "scopes": { "idc": "cluster-2" } });
    let (status, created) = manager.rest("POST", "/api/v1/clusters", Some(&body)).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let b_id = created["id"].as_i64().unwrap();
    let mut options_b = ClusterOptions::new(&dir_b, &bin_dir(), 0);
    options_b.daemon_env.extend(registry_env(&registry));
    options_b.daemon_env.push(idc("cluster-2"));
    options_b.external_manager = Some(ExternalManager::of(manager, b_id).await.unwrap());
    let b = Cluster::start(&options_b).await.unwrap_or_else(|e| panic!("start cluster B: {e:#}"));

    // Each cluster's scheduler and seed registered in their own cluster.
    let (_, schedulers) = manager.rest("GET", "/api/v1/schedulers", None).await.unwrap();
    let (_, seeds) = manager.rest("GET", "/api/v1/seed-peers", None).await.unwrap();
    for (members, what) in [(&schedulers, "schedulers"), (&seeds, "seed peers")] {
        let mut clusters: Vec<i64> =
            members.as_array().unwrap().iter().filter_map(|m| m["cluster_id"].as_i64()).collect();
        clusters.sort();
        assert_eq!(clusters, vec![1, b_id], "one of each cluster's {what}: {members}");
    }

    let nodes_a = [Node::start(&a, &dir_a, 0, &registry).await, Node::start(&a, &dir_a, 1, &registry).await];
    let nodes_b = [Node::start(&b, &dir_b, 10, &registry).await, Node::start(&b, &dir_b, 11, &registry).await];
    let sizes = blob_sizes(&small);
    let total: u64 = sizes.values().sum();
    // Bytes a cluster's members (its seed and its nodes' dfdaemons) uploaded to other peers.
    let members = |c: &Cluster, nodes: &[Node]| -> Vec<SocketAddr> {
        c.seed.iter().map(|d| d.metrics_addr()).chain(nodes.iter().map(|n| n.daemon.metrics_addr())).collect()
    };
    let (members_a, members_b) = (members(&a, &nodes_a), members(&b, &nodes_b));
    let uploaded = |members: &[SocketAddr]| {
        let members = members.to_vec();
        async move {
            let mut sum = 0.0;
            for m in members {
                let page = testkit::metrics::scrape(m).await.unwrap_or_default();
                sum += testkit::metrics::value(&page, "dfdaemon_upload_bytes_total").unwrap_or(0.0);
            }
            sum as u64
        }
    };
    let registry_bytes = || sizes.keys().map(|d| bytes_to(&blob_fetches(&registry, d), DFDAEMON_UA)).sum::<u64>();
    let seed_origin_bytes = |c: &Cluster| {
        let addr = c.seed.as_ref().unwrap().metrics_addr();
        async move {
            let page = testkit::metrics::scrape(addr).await.unwrap_or_default();
            testkit::metrics::value(&page, "dfdaemon_download_bytes_total{source=\"origin\"}").unwrap_or(0.0) as u64
        }
    };

    // First pull in A: from the registry once, through A's seed; B untouched.
    nodes_a[0].pull_checked(&reference, &small, None, SMALL_PULL).await;
    assert_each_blob_served_once_to_dfdaemon(&registry, &small).await;
    assert!(seed_origin_bytes(&a).await >= total, "A's seed fetched the blobs from the registry");
    assert_eq!(uploaded(&members_b).await, 0, "cluster B served nothing to cluster A");
    // First pull in B: from the registry once more (B has no copy), through B's seed.
    let before = registry_bytes();
    let a_uploaded = uploaded(&members_a).await;
    nodes_b[0].pull_checked(&reference, &small, None, SMALL_PULL).await;
    wait_until("the registry to log B's fetches", LOG_TIMEOUT, || async { registry_bytes() >= before + total })
        .await
        .unwrap();
    assert!(seed_origin_bytes(&b).await >= total, "B's seed fetched the blobs from the registry");
    assert_eq!(uploaded(&members_a).await, a_uploaded, "cluster A served nothing to cluster B");

    // Second pulls: neither the registry nor the other cluster.
    let before = registry_bytes();
    for (node, own, other) in [(&nodes_a[1], &members_a, &members_b), (&nodes_b[1], &members_b, &members_a)] {
        let (other_before, own_before) = (uploaded(other).await, uploaded(own).await);
        node.pull_checked(&reference, &small, None, SMALL_PULL).await;
        assert_eq!(uploaded(other).await, other_before, "{}: the other cluster served nothing", node.name);
        assert!(uploaded(own).await >= own_before + total, "{}: served inside its own cluster", node.name);
        let m = node.proxy_requests().await;
        assert!(count(&m, "mirror", "p2p") >= sizes.len() as u64 && count(&m, "mirror", "fallback") == 0, "{m:?}");
    }
    // A request of our own, sent after the pulls ended: once it is in the
    // access log, every earlier request is too.
    let barrier = "/v2/darter-log-barrier/manifests/latest";
    let _ = testkit::http::json(registry.addr, "GET", barrier, None, None).await;
    wait_until("the registry to log the barrier request", LOG_TIMEOUT, || async {
        registry.requests().iter().any(|r| r.path == barrier)
    })
    .await
    .unwrap();
    assert_eq!(registry_bytes(), before, "the second pulls fetched no blob from the registry");
}
