//! dfdaemon's config: `dfdaemon.yaml`, `DFDAEMON__*` env overrides, CLI flags.
//! Loaded as read -> defaults -> validate; every field has a documented default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use darter_common::config::{FieldError, Validate};
use darter_common::telemetry::{LogConfig, TracingConfig};
use darter_common::units::{ByteSize, duration};
use serde::{Deserialize, Serialize};

/// Prefix of environment overrides (`DFDAEMON__STORAGE__DATA_DIR=/x`).
pub const ENV_PREFIX: &str = "DFDAEMON";

/// The whole config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Facts about this host.
    pub host: HostConfig,
    /// Local storage of task content.
    pub storage: StorageConfig,
    /// The download API used by dfget.
    pub download: DownloadConfig,
    /// Fetching from the origin.
    pub back_to_source: BackToSourceConfig,
    /// The schedulers that plan peer-to-peer downloads.
    pub scheduler: SchedulerConfig,
    /// The manager that names the schedulers (and registers seed peers).
    pub manager: ManagerConfig,
    /// Fetching pieces from other peers.
    pub p2p: P2pConfig,
    /// Serving pieces to other peers.
    pub upload: UploadConfig,
    /// The registry mirror and HTTP proxy.
    pub proxy: ProxyConfig,
    /// `/metrics` and `/healthz` (default `0.0.0.0:4002`; formerly `metrics.addr`).
    pub metrics_addr: SocketAddr,
    /// Mutual TLS on the upload API and to the manager, schedulers and
    /// parents: where this member's certificate comes from.
    pub tls: darter_common::tls::TlsConfig,
    /// Logs.
    pub log: LogConfig,
    /// OpenTelemetry trace export.
    pub tracing: TracingConfig,
}

impl Config {
    /// Where an enrolled certificate is kept: `tls.state_dir`, else
    /// `<storage.data_dir>/tls`.
    pub fn tls_state_dir(&self) -> std::path::PathBuf {
        self.tls.state_dir.clone().unwrap_or_else(|| self.storage.data_dir.join("tls"))
    }
}

/// `host:`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Host name reported to the cluster (default: the OS host name).
    pub hostname: Option<String>,
    /// IP other peers reach this host on (default: the upload listener's IP
    /// when it names one; else the address of the default route's interface;
    /// else 127.0.0.1). The manager also matches this host's cluster by it.
    pub ip: Option<IpAddr>,
    /// IDC of this host (default empty).
    pub idc: String,
    /// Location `country|province|city|...` (default empty).
    pub location: String,
    /// Run as a seed peer: accept download triggers from the scheduler and
    /// always fetch from the origin when told to (default false).
    pub seed: bool,
}

/// `scheduler:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Scheduler gRPC addresses (`IP:PORT`); empty (default) means no swarm:
    /// every download goes to the origin. With several, each task goes to
    /// the one its ID hashes to, so all peers of a task meet there.
    pub addrs: Vec<String>,
    /// How often the host is announced (default `30s`).
    #[serde(with = "duration")]
    pub announce_interval: Duration,
    /// Connect timeout to a scheduler (default `2s`).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { addrs: Vec::new(), announce_interval: Duration::from_secs(30), connect_timeout: Duration::from_secs(2) }
    }
}

/// `manager:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerConfig {
    /// Manager gRPC addresses (`host:port`; replicas of one deployment).
    /// Empty (default): no manager, the schedulers are `scheduler.addrs`.
    /// Set: the schedulers are the active ones of the cluster the manager
    /// matches this host to, and a seed peer registers with it. One string
    /// reads as a list of one.
    #[serde(deserialize_with = "darter_common::config::one_or_many")]
    pub addrs: Vec<String>,
    /// Ask for this cluster explicitly (default none: the manager matches the
    /// host by CIDR, hostname, IDC, location, else the default cluster). A
    /// seed peer joins this cluster (none: the default cluster).
    pub cluster_id: Option<u64>,
    /// How often the scheduler list is asked again (default `1m`).
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
    /// Seed peers: how often a keepalive is sent to the manager (default `5s`).
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            addrs: Vec::new(),
            cluster_id: None,
            refresh_interval: Duration::from_secs(60),
            keepalive_interval: darter_common::manager_client::DEFAULT_KEEPALIVE_INTERVAL,
        }
    }
}

/// `p2p:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Piece requests in flight per download, over all parents (default 16).
    pub concurrency: usize,
    /// Piece requests in flight to one parent (default 1; the next goes out
    /// as soon as a piece's body has arrived, while it is verified and
    /// written). One connection per parent at the parent's full share of
    /// its link, instead of four at a quarter each, makes fewer and larger
    /// TCP segments and lets every child queue at each of its parents
    /// (issue 6, profile A with 16 peers: makespan 1.09-1.16x of the bound
    /// with 1, 1.18-1.27x with 4; CPU per GiB 6.4-7.2 s against 10.6-12.6).
    pub per_parent: usize,
    /// A piece request slower than this is abandoned and the parent marked slow (default `30s`).
    #[serde(with = "duration")]
    pub piece_timeout: Duration,
    /// No piece completing for this long asks the scheduler for new parents (default `20s`).
    #[serde(with = "duration")]
    pub stall_timeout: Duration,
    /// Most pieces a task fetched from parents may have (default 1048576,
    /// the most any task has: 64 TiB at 64 MiB pieces). Piece numbers from
    /// parents and the scheduler are checked against the task's piece count,
    /// and against this while the count is not known yet, so what a peer
    /// announces never grows this daemon's memory past `max_piece_count / 8`
    /// bytes per parent.
    pub max_piece_count: u32,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            per_parent: 1,
            piece_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(20),
            max_piece_count: darter_common::piece::MAX_PIECE_COUNT,
        }
    }
}

/// `storage:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where task content and metadata live (default `/var/lib/darter/dfdaemon`
    /// for root, else `$XDG_DATA_HOME/darter/dfdaemon` or `~/.local/share/darter/dfdaemon`).
    pub data_dir: PathBuf,
    /// Garbage collection.
    pub gc: GcConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { data_dir: crate::paths::default_data_dir(), gc: GcConfig::default() }
    }
}

/// `storage.gc:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How often GC runs (default `1m`).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Tasks not accessed for this long are removed (default `24h`).
    #[serde(with = "duration")]
    pub task_ttl: Duration,
    /// Bytes Darter may use on its disk (default: the filesystem's size). Only Darter's own bytes count.
    pub capacity: Option<ByteSize>,
    /// When Darter's bytes exceed this fraction of `capacity`, evict least recently used tasks (default 0.9).
    pub high_watermark: f64,
    /// ... until they are below this fraction (default 0.7).
    pub low_watermark: f64,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            task_ttl: Duration::from_secs(24 * 3600),
            capacity: None,
            high_watermark: 0.9,
            low_watermark: 0.7,
        }
    }
}

/// `download:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownloadConfig {
    /// Unix socket of the download API (default `/run/darter/dfdaemon.sock` for
    /// root, else `$XDG_RUNTIME_DIR/darter/dfdaemon.sock` or `/tmp/darter-<uid>/dfdaemon.sock`).
    pub socket: PathBuf,
    /// Timeout of a download when the request sets none (default `1h`).
    #[serde(with = "duration")]
    pub default_timeout: Duration,
    /// Longest URL a download may have (default `8KiB`); longer ones are
    /// refused (dfget, seed triggers, the proxy's P2P requests).
    pub max_url_bytes: ByteSize,
    /// Most request headers a download may pass to the origin (default 32).
    pub max_header_count: usize,
    /// Most bytes of request header names and values together (default `16KiB`).
    pub max_header_bytes: ByteSize,
    /// Group (name or number) whose members may use the socket, besides root
    /// and the daemon's user; the socket file is given to it. Default: the
    /// daemon's own group. Checked per request from the caller's credentials.
    #[serde(deserialize_with = "name_or_number")]
    pub socket_group: Option<String>,
}

/// A group written as a name (`darter`) or a number (`1000`).
fn name_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Group {
        Name(String),
        Number(u32),
    }
    Ok(Option::<Group>::deserialize(d)?.map(|g| match g {
        Group::Name(n) => n,
        Group::Number(n) => n.to_string(),
    }))
}

impl Default for DownloadConfig {
    fn default() -> Self {
        use darter_common::limits::{DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_COUNT, DEFAULT_MAX_URL_BYTES};
        Self {
            socket: crate::paths::default_socket(),
            default_timeout: Duration::from_secs(3600),
            max_url_bytes: ByteSize(DEFAULT_MAX_URL_BYTES),
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_header_bytes: ByteSize(DEFAULT_MAX_HEADER_BYTES),
            socket_group: None,
        }
    }
}

impl DownloadConfig {
    /// The request limits these fields set.
    pub fn limits(&self) -> darter_common::limits::RequestLimits {
        darter_common::limits::RequestLimits {
            max_url_bytes: self.max_url_bytes.as_u64(),
            max_header_count: self.max_header_count,
            max_header_bytes: self.max_header_bytes.as_u64(),
        }
    }
}

/// `back_to_source:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackToSourceConfig {
    /// Piece-sized range requests in flight per task (default 4).
    pub concurrency: usize,
    /// Attempts per piece (and per stream) before the download fails (default 5).
    pub max_attempts: u32,
    /// Connect timeout to the origin (default `10s`).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// An origin response that sends no byte for this long is retried (default `30s`).
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Redirects followed (default 10).
    pub max_redirects: usize,
    /// PEM files of CA certificates trusted for HTTPS origins and registries,
    /// in addition to the system's (default none).
    pub ca_certs: Vec<PathBuf>,
    /// Largest content fetched from an origin that does not say its length
    /// (no `Content-Length`: the body is streamed) (default `64GiB`, at most
    /// `4TiB`, what 4 MiB pieces allow). Past it the download fails
    /// ("content too large", dfget exit 1) and what was stored is removed.
    /// An origin that gives a length is held to it (and to the disk) instead.
    pub max_content_length: ByteSize,
}

impl Default for BackToSourceConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_redirects: 10,
            ca_certs: Vec::new(),
            max_content_length: ByteSize::gib(64),
        }
    }
}

/// `upload:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Upload gRPC API (piece availability, seed triggers) (default `0.0.0.0:4000`).
    pub grpc_addr: SocketAddr,
    /// Piece data server (bulk piece bytes over HTTP) (default `0.0.0.0:4003`).
    pub piece_addr: SocketAddr,
    /// Concurrent piece uploads (default 4); more wait in a short line,
    /// the child holding the fewest pieces first, and get 503 when it is
    /// full or after 2 s (`piece_server::slots`). Few
    /// slots finish each piece sooner, so children can pass it on sooner: a
    /// link split 32 ways takes 32 times as long to deliver any one piece
    /// (issue 6, profile A with 16 peers: median makespan 1.24x of the bound
    /// over 8 runs with 32 slots, 1.19x over 5 with 4).
    pub slots: usize,
    /// Upload bandwidth for all peers together, per second (e.g. `100MiB`;
    /// default none: unlimited).
    pub rate_limit: Option<ByteSize>,
    /// Piece server connections open at once (default 1024); more are
    /// closed as they are accepted.
    pub max_connections: usize,
    /// Piece server connections open at once from one IP address (default
    /// 64), so one client cannot take all of `max_connections`. A child keeps
    /// about two per parent per `p2p.per_parent`.
    pub max_connections_per_client: usize,
    /// Encrypt piece traffic (default false): the piece server speaks TLS
    /// with member certificates, and children that fetch from it follow
    /// (they learn it from the scheduler). Pieces are verified by digest
    /// either way; encryption costs the parent its zero-copy send. Needs
    /// `tls.mode: mtls`.
    pub encrypt: bool,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 4000).into(),
            piece_addr: ([0, 0, 0, 0], 4003).into(),
            slots: 4,
            rate_limit: None,
            max_connections: 1024,
            max_connections_per_client: 64,
            encrypt: false,
        }
    }
}

/// `proxy:` — the registry mirror (containerd `hosts.toml`) and HTTP proxy on
/// one port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Serve the proxy (default true).
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:4001`: the node's own containerd and
    /// tools; listen wider only behind a firewall, it fetches for whoever asks).
    pub addr: SocketAddr,
    /// Regexes over the upstream URL: a `GET` whose URL matches is served
    /// through P2P, everything else passes straight through. Default: registry
    /// blobs, `/v2/<name>/blobs/sha256:<64 hex>` (manifests, tags and tokens are
    /// mutable or small and always pass through).
    pub rules: Vec<String>,
    /// Upstream of mirror requests that name none (no `ns`, no
    /// `X-Darter-Registry` header) (default `https://registry-1.docker.io`).
    pub default_registry: String,
    /// Registries (`host[:port]`) reached over plain HTTP instead of HTTPS.
    pub insecure_registries: Vec<String>,
    /// Upstream hosts the proxy may reach: `host`, `host:port` or `*.domain`.
    /// Empty (the default) allows any host. This narrows what the proxy
    /// reaches; `allowed_destinations` widens it to internal addresses.
    pub allowed_hosts: Vec<String>,
    /// Internal destinations the proxy may reach anyway (default none).
    /// Without an entry, a destination that is, or whose name resolves to,
    /// a loopback, private, link-local, metadata or other internal address
    /// gets 403. An entry is an address or range (`10.0.0.0/8`,
    /// `127.0.0.1`: any port, however named), or a destination as clients
    /// name it (`registry.corp`, `registry.corp:5000`, `*.corp`,
    /// `127.0.0.1:5000`, `[::1]:5000`: that name, wherever it resolves).
    pub allowed_destinations: Vec<String>,
    /// Ports `CONNECT` may open tunnels to (default `[443]`; others get 403).
    pub connect_ports: Vec<u16>,
    /// A relay or tunnel on which nothing moves for this long is cut: an
    /// upstream that sends nothing, a client that sends nothing of its body
    /// or takes nothing of the answer, a tunnel silent both ways (default `60s`).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Largest request head accepted (default 64KiB; larger gets 431).
    pub max_header_bytes: ByteSize,
    /// PEM CA certificate for TLS interception of `CONNECT` tunnels (with
    /// `ca_key`). Unset (the default): tunnels are never intercepted.
    pub ca_cert: Option<PathBuf>,
    /// PEM private key of `ca_cert`.
    pub ca_key: Option<PathBuf>,
    /// One more listener per registry, for clients that cannot name the
    /// registry to a mirror (CRI-O and other containers/image clients send
    /// neither `?ns=` nor headers): every request on `addr` is a mirror
    /// request for `registry`, as if it carried `?ns=<registry>`. Default
    /// none; `dfdaemon containerd-config --crio` points CRI-O at them.
    pub registry_mirrors: Vec<RegistryMirror>,
}

/// A listener that mirrors one registry (`proxy.registry_mirrors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryMirror {
    /// The registry, `host[:port]` as images name it (`docker.io`, `ghcr.io`,
    /// `10.0.0.1:5000`); plain HTTP when listed in `proxy.insecure_registries`.
    pub registry: String,
    /// Listen address (e.g. `127.0.0.1:4011`).
    pub addr: SocketAddr,
}

/// The most `back_to_source.max_content_length` may be: every piece of a
/// streamed task is 4 MiB, and a task has at most
/// [`darter_common::piece::MAX_PIECE_COUNT`] pieces.
pub const MAX_STREAMED_CONTENT_LENGTH: u64 =
    darter_common::piece::MAX_PIECE_COUNT as u64 * darter_common::piece::UNKNOWN_LENGTH_PIECE_LENGTH;

/// The default P2P rule: registry blobs by digest.
pub const BLOB_RULE: &str = r"/v2/.+/blobs/sha256:[0-9a-f]{64}$";

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: ([127, 0, 0, 1], 4001).into(),
            rules: vec![BLOB_RULE.to_owned()],
            default_registry: "https://registry-1.docker.io".into(),
            insecure_registries: Vec::new(),
            allowed_hosts: Vec::new(),
            allowed_destinations: Vec::new(),
            connect_ports: vec![443],
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: ByteSize::kib(64),
            ca_cert: None,
            ca_key: None,
            registry_mirrors: Vec::new(),
        }
    }
}

impl ProxyConfig {
    fn validate(&self) -> Result<(), FieldError> {
        for (i, rule) in self.rules.iter().enumerate() {
            regex::Regex::new(rule).map_err(|e| FieldError::new(format!("proxy.rules[{i}]"), e.to_string()))?;
        }
        let default = url::Url::parse(&self.default_registry)
            .map_err(|e| FieldError::new("proxy.default_registry", e.to_string()))?;
        if !matches!(default.scheme(), "http" | "https") || default.host_str().is_none() {
            return Err(FieldError::new("proxy.default_registry", "expected http(s)://host[:port]"));
        }
        for (field, list) in
            [("proxy.insecure_registries", &self.insecure_registries), ("proxy.allowed_hosts", &self.allowed_hosts)]
        {
            if let Some(i) =
                list.iter().position(|h| h.is_empty() || h.contains('/') || h.contains(char::is_whitespace))
            {
                return Err(FieldError::new(format!("{field}[{i}]"), "expected host, host:port (or *.domain)"));
            }
        }
        if let Err((i, e)) = crate::proxy::destination::DestinationGuard::new(&self.allowed_destinations) {
            return Err(FieldError::new(format!("proxy.allowed_destinations[{i}]"), e));
        }
        if let Some(i) = self.connect_ports.iter().position(|p| *p == 0) {
            return Err(FieldError::new(format!("proxy.connect_ports[{i}]"), "0 is not a port"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.idle_timeout) {
            return Err(FieldError::new("proxy.idle_timeout", "must be between 1s and 1h"));
        }
        if self.ca_cert.is_some() != self.ca_key.is_some() {
            let missing = if self.ca_cert.is_none() { "proxy.ca_cert" } else { "proxy.ca_key" };
            return Err(FieldError::new(missing, "TLS interception needs both proxy.ca_cert and proxy.ca_key"));
        }
        let head = self.max_header_bytes.as_u64();
        if !(8 * 1024..=1024 * 1024).contains(&head) {
            return Err(FieldError::new("proxy.max_header_bytes", "must be between 8KiB and 1MiB"));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: HostConfig::default(),
            storage: StorageConfig::default(),
            download: DownloadConfig::default(),
            back_to_source: BackToSourceConfig::default(),
            scheduler: SchedulerConfig::default(),
            manager: ManagerConfig::default(),
            p2p: P2pConfig::default(),
            upload: UploadConfig::default(),
            proxy: ProxyConfig::default(),
            metrics_addr: ([0, 0, 0, 0], 4002).into(),
            tls: darter_common::tls::TlsConfig::default(),
            log: LogConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Validate for Config {
    /// `metrics_addr` is spelled as the manager and scheduler spell it.
    const RENAMED: &'static [(&'static str, &'static str)] = &[("metrics.addr", "metrics_addr")];
    const SECRETS: &'static [&'static str] = &["tls.join_token"];

    fn validate(&self) -> Result<(), FieldError> {
        self.tls.validate("tls")?;
        if let Some(group) = &self.download.socket_group {
            crate::socket_access::resolve_group(group).map_err(|e| FieldError::new("download.socket_group", e))?;
        }
        if let Ok(Some(darter_common::tls::config::Source::Enrollment { .. })) = self.tls.source("tls")
            && self.manager.addrs.is_empty()
        {
            return Err(FieldError::new("tls.join_token", "enrollment needs the manager's address (manager.addrs)"));
        }
        if self.upload.encrypt && self.tls.mode == darter_common::tls::TlsMode::Plaintext {
            return Err(FieldError::new("upload.encrypt", "encrypting piece traffic needs tls.mode: mtls"));
        }
        let gc = &self.storage.gc;
        if !(0.0..=1.0).contains(&gc.high_watermark) || gc.high_watermark == 0.0 {
            return Err(FieldError::new("storage.gc.high_watermark", "must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&gc.low_watermark) || gc.low_watermark >= gc.high_watermark {
            return Err(FieldError::new("storage.gc.low_watermark", "must be in [0, high_watermark)"));
        }
        if gc.interval.is_zero() {
            return Err(FieldError::new("storage.gc.interval", "must be positive"));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(FieldError::new("storage.data_dir", "must not be empty"));
        }
        if self.download.socket.as_os_str().is_empty() {
            return Err(FieldError::new("download.socket", "must not be empty"));
        }
        let b = &self.back_to_source;
        if b.concurrency == 0 || b.concurrency > 64 {
            return Err(FieldError::new("back_to_source.concurrency", "must be between 1 and 64"));
        }
        if b.max_attempts == 0 {
            return Err(FieldError::new("back_to_source.max_attempts", "must be at least 1"));
        }
        for (i, a) in self.scheduler.addrs.iter().enumerate() {
            a.parse::<SocketAddr>()
                .map_err(|_| FieldError::new(format!("scheduler.addrs[{i}]"), format!("{a:?} is not IP:PORT")))?;
        }
        for (i, a) in self.manager.addrs.iter().enumerate() {
            darter_common::manager_client::endpoint(a)
                .map_err(|e| FieldError::new(format!("manager.addrs[{i}]"), e))?;
        }
        if self.manager.cluster_id == Some(0) {
            return Err(FieldError::new("manager.cluster_id", "must be a cluster ID (leave it out to be matched)"));
        }
        for (field, value) in [
            ("manager.refresh_interval", self.manager.refresh_interval),
            ("manager.keepalive_interval", self.manager.keepalive_interval),
        ] {
            if value.is_zero() {
                return Err(FieldError::new(field, "must be positive"));
            }
        }
        if self.scheduler.announce_interval.is_zero() {
            return Err(FieldError::new("scheduler.announce_interval", "must be positive"));
        }
        if self.p2p.concurrency == 0 || self.p2p.concurrency > 256 {
            return Err(FieldError::new("p2p.concurrency", "must be between 1 and 256"));
        }
        if self.p2p.per_parent == 0 {
            return Err(FieldError::new("p2p.per_parent", "must be at least 1"));
        }
        if self.upload.rate_limit.is_some_and(|r| r.as_u64() == 0) {
            return Err(FieldError::new("upload.rate_limit", "must be positive (leave it out for no limit)"));
        }
        if self.upload.slots == 0 {
            return Err(FieldError::new("upload.slots", "must be at least 1"));
        }
        if self.upload.max_connections == 0 {
            return Err(FieldError::new("upload.max_connections", "must be at least 1"));
        }
        if !(1..=self.upload.max_connections).contains(&self.upload.max_connections_per_client) {
            return Err(FieldError::new(
                "upload.max_connections_per_client",
                "must be between 1 and upload.max_connections",
            ));
        }
        if !(1..=darter_common::piece::MAX_PIECE_COUNT).contains(&self.p2p.max_piece_count) {
            return Err(FieldError::new(
                "p2p.max_piece_count",
                format!("must be between 1 and {}", darter_common::piece::MAX_PIECE_COUNT),
            ));
        }
        let most = MAX_STREAMED_CONTENT_LENGTH;
        if !(1..=most).contains(&self.back_to_source.max_content_length.as_u64()) {
            return Err(FieldError::new("back_to_source.max_content_length", "must be between 1 byte and 4TiB"));
        }
        let d = &self.download;
        if d.max_url_bytes.as_u64() < 256 || d.max_url_bytes.as_u64() > 1 << 20 {
            return Err(FieldError::new("download.max_url_bytes", "must be between 256 and 1MiB"));
        }
        if d.max_header_count > 1024 {
            return Err(FieldError::new("download.max_header_count", "must be at most 1024"));
        }
        if d.max_header_bytes.as_u64() > 1 << 20 {
            return Err(FieldError::new("download.max_header_bytes", "must be at most 1MiB"));
        }
        darter_common::host::validate("host", self.host.hostname.as_deref(), self.host.ip)?;
        self.proxy.validate()?;
        self.validate_registry_mirrors()?;
        self.log.validate("log")?;
        self.tracing.validate("tracing")
    }
}

impl Config {
    /// `proxy.registry_mirrors`: a registry once (under any of its names),
    /// each on a port of its own (no other listener of this daemon on it),
    /// and only with the proxy on.
    fn validate_registry_mirrors(&self) -> Result<(), FieldError> {
        let mirrors = &self.proxy.registry_mirrors;
        if !mirrors.is_empty() && !self.proxy.enabled {
            return Err(FieldError::new("proxy.registry_mirrors", "the proxy is off (proxy.enabled: false)"));
        }
        let listeners = [
            ("proxy.addr", self.proxy.addr),
            ("upload.grpc_addr", self.upload.grpc_addr),
            ("upload.piece_addr", self.upload.piece_addr),
            ("metrics_addr", self.metrics_addr),
        ];
        let clash = |a: SocketAddr, b: SocketAddr| {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        for (i, m) in mirrors.iter().enumerate() {
            let field = |f: &str| format!("proxy.registry_mirrors[{i}].{f}");
            crate::containerd::check_registry(&m.registry).map_err(|e| FieldError::new(field("registry"), e))?;
            if let Some((name, _)) = listeners.iter().find(|(_, addr)| clash(m.addr, *addr)) {
                return Err(FieldError::new(field("addr"), format!("{} is also {name}'s port", m.addr)));
            }
            let earlier = &mirrors[..i];
            if let Some(j) = earlier.iter().position(|e| clash(m.addr, e.addr)) {
                return Err(FieldError::new(field("addr"), format!("also the port of proxy.registry_mirrors[{j}]")));
            }
            let upstream = crate::containerd::server(&m.registry, false);
            if let Some(j) = earlier.iter().position(|e| crate::containerd::server(&e.registry, false) == upstream) {
                return Err(FieldError::new(
                    field("registry"),
                    format!("{} is the registry of proxy.registry_mirrors[{j}] ({upstream})", m.registry),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_settings_are_validated_naming_the_field() {
        Config::default().validate().unwrap();
        let field = |f: fn(&mut ProxyConfig)| {
            let mut c = Config::default();
            f(&mut c.proxy);
            c.validate().unwrap_err().field
        };
        assert_eq!(field(|p| p.rules = vec![BLOB_RULE.into(), "(".into()]), "proxy.rules[1]");
        assert_eq!(field(|p| p.default_registry = "ftp://x".into()), "proxy.default_registry");
        assert_eq!(field(|p| p.insecure_registries = vec!["a b".into()]), "proxy.insecure_registries[0]");
        assert_eq!(field(|p| p.allowed_hosts = vec!["x".into(), "http://y/".into()]), "proxy.allowed_hosts[1]");
        assert_eq!(field(|p| p.max_header_bytes = ByteSize::kib(1)), "proxy.max_header_bytes");
        assert_eq!(
            field(|p| p.allowed_destinations = vec!["10.0.0.0/8".into(), "10.1.0.0/8".into()]),
            "proxy.allowed_destinations[1]"
        );
        assert_eq!(field(|p| p.allowed_destinations = vec!["host:99999".into()]), "proxy.allowed_destinations[0]");
        assert_eq!(field(|p| p.connect_ports = vec![443, 0]), "proxy.connect_ports[1]");
        assert_eq!(field(|p| p.idle_timeout = Duration::ZERO), "proxy.idle_timeout");
        assert_eq!(field(|p| p.ca_cert = Some("/ca.pem".into())), "proxy.ca_key");
        assert_eq!(field(|p| p.ca_key = Some("/ca.key".into())), "proxy.ca_cert");
    }

    #[test]
    fn registry_mirrors_each_have_a_registry_and_a_port_of_their_own() {
        let mirror = |registry: &str, port: u16| RegistryMirror {
            registry: registry.into(),
            addr: ([127, 0, 0, 1], port).into(),
        };
        let check = |mirrors: Vec<RegistryMirror>| {
            let mut c = Config::default();
            c.proxy.registry_mirrors = mirrors;
            c.validate().map_err(|e| (e.field, e.message))
        };
        check(vec![mirror("ghcr.io", 4011), mirror("docker.io", 4012)]).unwrap();
        // Port 0 (tests) never clashes.
        check(vec![mirror("ghcr.io", 0), mirror("quay.io", 0)]).unwrap();
        let (field, message) = check(vec![mirror("ghcr.io", 4001)]).unwrap_err();
        assert_eq!((field.as_str(), message.contains("proxy.addr")), ("proxy.registry_mirrors[0].addr", true));
        // The upload port listens on 0.0.0.0: 127.0.0.1 on the same port clashes.
        let (field, message) = check(vec![mirror("ghcr.io", 4000)]).unwrap_err();
        assert_eq!((field.as_str(), message.contains("upload.grpc_addr")), ("proxy.registry_mirrors[0].addr", true));
        let (field, _) = check(vec![mirror("ghcr.io", 4011), mirror("quay.io", 4011)]).unwrap_err();
        assert_eq!(field, "proxy.registry_mirrors[1].addr");
        for (a, b) in [("docker.io", "index.docker.io"), ("ghcr.io", "GHCR.io")] {
            let (field, _) = check(vec![mirror(a, 4011), mirror(b, 4012)]).unwrap_err();
            assert_eq!(field, "proxy.registry_mirrors[1].registry", "{a} and {b}");
        }
        let (field, _) = check(vec![mirror("bad host", 4011)]).unwrap_err();
        assert_eq!(field, "proxy.registry_mirrors[0].registry");
        let mut off = Config::default();
        off.proxy.enabled = false;
        off.proxy.registry_mirrors = vec![mirror("ghcr.io", 4011)];
        assert_eq!(off.validate().unwrap_err().field, "proxy.registry_mirrors");
    }

    #[test]
    fn limits_are_validated_naming_the_field() {
        let field = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(field(|c| c.upload.max_connections_per_client = 0), "upload.max_connections_per_client");
        assert_eq!(field(|c| c.upload.max_connections_per_client = 2000), "upload.max_connections_per_client");
        assert_eq!(field(|c| c.upload.max_connections = 0), "upload.max_connections");
        assert_eq!(field(|c| c.p2p.max_piece_count = 0), "p2p.max_piece_count");
        assert_eq!(field(|c| c.p2p.max_piece_count = u32::MAX), "p2p.max_piece_count");
        assert_eq!(
            field(|c| c.back_to_source.max_content_length = ByteSize::gib(8192)),
            "back_to_source.max_content_length"
        );
        assert_eq!(field(|c| c.download.max_url_bytes = ByteSize(10)), "download.max_url_bytes");
        assert_eq!(field(|c| c.download.max_header_count = 5000), "download.max_header_count");
        assert_eq!(
            field(|c| {
                c.upload.encrypt = true;
                c.tls.mode = darter_common::tls::TlsMode::Plaintext;
            }),
            "upload.encrypt"
        );
    }
}
