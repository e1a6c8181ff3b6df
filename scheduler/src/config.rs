//! The scheduler's config: `scheduler.yaml`, `SCHEDULER__*` env overrides, CLI
//! flags. Loaded as read -> defaults -> validate; every field has a documented default.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use darter_common::config::{FieldError, Validate};
use darter_common::telemetry::{LogConfig, TracingConfig};
use darter_common::units::{ByteSize, duration};
use serde::{Deserialize, Serialize};

/// Prefix of environment overrides (`SCHEDULER__SCHEDULING__CANDIDATE_PARENT_LIMIT=8`).
pub const ENV_PREFIX: &str = "SCHEDULER";

/// The whole config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC API for peers (default `0.0.0.0:8002`, the cluster's well-known scheduler port).
    pub grpc_addr: SocketAddr,
    /// `/metrics` and `/healthz` (default `0.0.0.0:8000`).
    pub metrics_addr: SocketAddr,
    /// Seed peers of this cluster, triggered to fetch a task no peer has yet
    /// (default none: the first peer of a task fetches from the origin itself).
    /// With a manager, the seed peers it lists for the cluster count too.
    pub seed_peers: Vec<SeedPeerConfig>,
    /// The manager this scheduler registers with (default none: standalone).
    pub manager: ManagerConfig,
    /// How this scheduler describes itself to the manager.
    pub host: HostConfig,
    /// Scheduling limits.
    pub scheduling: SchedulingConfig,
    /// Garbage collection of hosts, tasks and peers.
    pub gc: GcConfig,
    /// What one request or one host may hold.
    pub limits: LimitsConfig,
    /// Mutual TLS on the gRPC port and to the manager and seed peers: where
    /// the scheduler's certificate comes from (see `darter_common::tls::config`).
    pub tls: darter_common::tls::TlsConfig,
    /// Logs.
    pub log: LogConfig,
    /// OpenTelemetry trace export.
    pub tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 8002).into(),
            metrics_addr: ([0, 0, 0, 0], 8000).into(),
            seed_peers: Vec::new(),
            manager: ManagerConfig::default(),
            host: HostConfig::default(),
            scheduling: SchedulingConfig::default(),
            gc: GcConfig::default(),
            limits: LimitsConfig::default(),
            tls: darter_common::tls::TlsConfig::default(),
            log: LogConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

/// One entry of `seed_peers:`. The seed must also announce itself as a host of
/// type SEED with this IP and upload port, so the scheduler can hand it out as a parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPeerConfig {
    /// IP of the seed's dfdaemon (required).
    pub ip: IpAddr,
    /// Port of its upload gRPC API, where `TriggerDownloadTask` is served
    /// (default 4000, dfdaemon's default upload port).
    #[serde(default = "default_seed_port")]
    pub port: u16,
}

fn default_seed_port() -> u16 {
    4000
}

impl SeedPeerConfig {
    /// Address of the seed's upload API.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// `manager:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerConfig {
    /// The manager's gRPC addresses, `host:port` (replicas of one deployment;
    /// also `--manager`, repeatable). Empty (default): no manager; seed peers
    /// come from `seed_peers` only. The old single `manager.addr` still reads.
    #[serde(deserialize_with = "darter_common::config::one_or_many")]
    pub addrs: Vec<String>,
    /// Cluster to join (default none: the manager's default cluster). The old
    /// spelling of none, `0`, still reads as none.
    #[serde(deserialize_with = "zero_is_none")]
    pub cluster_id: Option<u64>,
    /// How often a keepalive is sent on the open stream (default `5s`; the
    /// manager's grace period, 15s by default, should be a few of these).
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// How often the cluster's active seed peers are asked of the manager
    /// (default `10s`; formerly `seed_peer_refresh_interval`). Between
    /// answers, and while the manager is unreachable, the last list stands.
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            addrs: Vec::new(),
            cluster_id: None,
            keepalive_interval: darter_common::manager_client::DEFAULT_KEEPALIVE_INTERVAL,
            refresh_interval: Duration::from_secs(10),
        }
    }
}

/// `cluster_id`: absent or `null` is none, and so is `0`, which is how none
/// was written before it was an option.
fn zero_is_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.filter(|&id| id != 0))
}

/// `host:`, what the scheduler registers with the manager (used only with a manager).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Host name (default: the OS host name).
    pub hostname: Option<String>,
    /// The IP peers reach the scheduler on (default: the IP of `grpc_addr`
    /// when it names one; else the address of the default route's interface;
    /// else 127.0.0.1).
    pub ip: Option<IpAddr>,
    /// IDC (default empty).
    pub idc: String,
    /// Location `country|province|city|...` (default empty).
    pub location: String,
}

/// `scheduling:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// Candidate parents handed to a peer per answer (default 4: enough to
    /// spread load and survive a slow parent).
    pub candidate_parent_limit: usize,
    /// Downloading peers a peer is pushed to as a new parent when it verifies
    /// its first piece (default 4; 0 turns introductions off). In a flash
    /// crowd nobody holds a piece when the peers register, so this is how
    /// peers come to fetch from each other and not all from the seed.
    pub introduce_limit: usize,
    /// Peers of one task fetching from the origin at once (default 1: origin
    /// protection, a cold flash crowd costs the origin about one copy). Seed
    /// peers do not count: they are the cluster's designated origin fetchers.
    pub back_to_source_limit: usize,
    /// Reschedules a peer may ask for in one download before it is sent to the
    /// origin (when the limit above allows) or refused (default 10).
    pub max_reschedules: u32,
    /// Parents a peer may download from at once, passed to the peer (default 4).
    pub concurrent_parent_limit: u32,
    /// Children one parent is handed to at once in a task (default 32): a
    /// parent with this many downloading children is nobody's candidate or
    /// introduction until some finish.
    pub load_limit: usize,
    /// How long a piece grant lasts (default `15m`; with TLS only). A child
    /// whose grant expired mid-download is refused by that parent, sets it
    /// aside, and gets it back with a fresh grant when it is offered again.
    #[serde(with = "duration")]
    pub grant_ttl: Duration,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        Self {
            candidate_parent_limit: 4,
            introduce_limit: 4,
            back_to_source_limit: 1,
            max_reschedules: 10,
            concurrent_parent_limit: 4,
            load_limit: 32,
            grant_ttl: darter_common::tls::grant::DEFAULT_TTL,
        }
    }
}

/// `gc:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How often GC runs (default `30s`).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A peer not heard from for this long is removed (default `1h`).
    #[serde(with = "duration")]
    pub peer_ttl: Duration,
    /// A task with no peers for this long is removed, with its piece digests (default `1h`).
    #[serde(with = "duration")]
    pub task_ttl: Duration,
    /// A host that has not announced itself for this long is removed with its
    /// peers (default `5m`: ten missed announcements at dfdaemon's default 30s interval).
    #[serde(with = "duration")]
    pub host_ttl: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            peer_ttl: Duration::from_secs(3600),
            task_ttl: Duration::from_secs(3600),
            host_ttl: Duration::from_secs(300),
        }
    }
}

/// `limits:`. Seed peers (trusted, and triggered by the scheduler itself)
/// are held to none of the per-host limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest download URL a `register` may carry (default `8KiB`); longer
    /// ones end the stream with `INVALID_ARGUMENT` and are never kept.
    pub max_url_bytes: ByteSize,
    /// Most request headers a `register`'s download may carry (default 32).
    pub max_header_count: usize,
    /// Most bytes of those headers' names and values together (default `16KiB`).
    pub max_header_bytes: ByteSize,
    /// Tasks one host may have created (been the first to register) that
    /// are still held (default 4096). At the limit, the host's least
    /// recently active task with nothing downloading is dropped to make room;
    /// when every one is downloading, the registration is refused
    /// (`RESOURCE_EXHAUSTED`, reason `limit_exceeded`).
    pub max_tasks_per_host: usize,
    /// Downloads (open announce streams) one host may have registered at
    /// once (default 1024); more are refused the same way.
    pub max_peers_per_host: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        use darter_common::limits::{DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_COUNT, DEFAULT_MAX_URL_BYTES};
        Self {
            max_url_bytes: ByteSize(DEFAULT_MAX_URL_BYTES),
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_header_bytes: ByteSize(DEFAULT_MAX_HEADER_BYTES),
            max_tasks_per_host: 4096,
            max_peers_per_host: 1024,
        }
    }
}

impl LimitsConfig {
    /// The request size limits these fields set.
    pub fn request(&self) -> darter_common::limits::RequestLimits {
        darter_common::limits::RequestLimits {
            max_url_bytes: self.max_url_bytes.as_u64(),
            max_header_count: self.max_header_count,
            max_header_bytes: self.max_header_bytes.as_u64(),
        }
    }

    fn validate(&self) -> Result<(), FieldError> {
        if !(256..=1 << 20).contains(&self.max_url_bytes.as_u64()) {
            return Err(FieldError::new("limits.max_url_bytes", "must be between 256 and 1MiB"));
        }
        if self.max_header_count > 1024 {
            return Err(FieldError::new("limits.max_header_count", "must be at most 1024"));
        }
        if self.max_header_bytes.as_u64() > 1 << 20 {
            return Err(FieldError::new("limits.max_header_bytes", "must be at most 1MiB"));
        }
        for (field, value) in [
            ("limits.max_tasks_per_host", self.max_tasks_per_host),
            ("limits.max_peers_per_host", self.max_peers_per_host),
        ] {
            if value == 0 {
                return Err(FieldError::new(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

impl Validate for Config {
    const RENAMED: &'static [(&'static str, &'static str)] =
        &[("manager.addr", "manager.addrs"), ("manager.seed_peer_refresh_interval", "manager.refresh_interval")];
    const SECRETS: &'static [&'static str] = &["tls.join_token"];

    fn validate(&self) -> Result<(), FieldError> {
        for (i, seed) in self.seed_peers.iter().enumerate() {
            if seed.port == 0 {
                return Err(FieldError::new(format!("seed_peers[{i}].port"), "must not be 0"));
            }
            if seed.ip.is_unspecified() {
                return Err(FieldError::new(
                    format!("seed_peers[{i}].ip"),
                    "must be a reachable address, not 0.0.0.0/::",
                ));
            }
            if self.seed_peers[..i].contains(seed) {
                return Err(FieldError::new(format!("seed_peers[{i}]"), format!("{} is listed twice", seed.addr())));
            }
        }
        for (i, a) in self.manager.addrs.iter().enumerate() {
            darter_common::manager_client::endpoint(a)
                .map_err(|e| FieldError::new(format!("manager.addrs[{i}]"), e))?;
        }
        for (field, value) in [
            ("manager.keepalive_interval", self.manager.keepalive_interval),
            ("manager.refresh_interval", self.manager.refresh_interval),
        ] {
            if value.is_zero() {
                return Err(FieldError::new(field, "must be positive"));
            }
        }
        darter_common::host::validate("host", self.host.hostname.as_deref(), self.host.ip)?;
        self.tls.validate("tls")?;
        if let Ok(Some(darter_common::tls::config::Source::Enrollment { .. })) = self.tls.source("tls")
            && self.manager.addrs.is_empty()
        {
            return Err(FieldError::new("tls.join_token", "enrollment needs the manager's address (manager.addrs)"));
        }
        let s = &self.scheduling;
        if !(1..=64).contains(&s.candidate_parent_limit) {
            return Err(FieldError::new("scheduling.candidate_parent_limit", "must be between 1 and 64"));
        }
        if s.introduce_limit > 64 {
            return Err(FieldError::new("scheduling.introduce_limit", "must be between 0 and 64"));
        }
        if s.back_to_source_limit == 0 {
            return Err(FieldError::new(
                "scheduling.back_to_source_limit",
                "must be at least 1 (without seed peers, someone has to fetch from the origin)",
            ));
        }
        if !(1..=64).contains(&s.concurrent_parent_limit) {
            return Err(FieldError::new("scheduling.concurrent_parent_limit", "must be between 1 and 64"));
        }
        for (field, value) in [
            ("gc.interval", self.gc.interval),
            ("gc.peer_ttl", self.gc.peer_ttl),
            ("gc.task_ttl", self.gc.task_ttl),
            ("gc.host_ttl", self.gc.host_ttl),
        ] {
            if value.is_zero() {
                return Err(FieldError::new(field, "must be positive"));
            }
        }
        self.limits.validate()?;
        self.log.validate("log")?;
        self.tracing.validate("tracing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use darter_common::config::load;

    fn load_yaml(text: &str) -> Result<Config, String> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        load::<Config, _>(Some(f.path()), ENV_PREFIX, Vec::new(), &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = load_yaml("").unwrap();
        assert_eq!(c.grpc_addr.port(), 8002);
        assert_eq!(c.metrics_addr.port(), 8000);
        assert_eq!(c.scheduling.candidate_parent_limit, 4);
        assert_eq!(c.scheduling.back_to_source_limit, 1);
        assert_eq!(c.gc.host_ttl, Duration::from_secs(300));
        assert!(c.seed_peers.is_empty());
        assert!(c.manager.addrs.is_empty());
        assert_eq!(c.manager.cluster_id, None);
        assert_eq!(c.manager.keepalive_interval, Duration::from_secs(5));
        assert_eq!(c.manager.refresh_interval, Duration::from_secs(10));
    }

    #[test]
    fn manager_section_parses_and_validates() {
        let c = load_yaml(
            "manager:\n  addrs: [manager:65003, replica:65003]\n  cluster_id: 2\n  keepalive_interval: 1s\nhost:\n  ip: 10.0.0.5\n  idc: a\n",
        )
        .unwrap();
        assert_eq!(
            (c.manager.addrs.as_slice(), c.manager.cluster_id),
            (&["manager:65003".into(), "replica:65003".into()][..], Some(2))
        );
        assert_eq!(c.host.ip, Some("10.0.0.5".parse().unwrap()));
        for (yaml, field) in [
            ("manager:\n  addrs: [10.0.0.1]\n", "manager.addrs[0]"),
            ("manager:\n  addrs: [m:1, http://10.0.0.1:65003]\n", "manager.addrs[1]"),
            ("manager:\n  keepalive_interval: 0s\n", "manager.keepalive_interval"),
            ("manager:\n  refresh_interval: 0s\n", "manager.refresh_interval"),
            ("host:\n  ip: 0.0.0.0\n", "host.ip"),
            ("host:\n  hostname: ''\n", "host.hostname"),
        ] {
            let e = load_yaml(yaml).unwrap_err();
            assert!(e.contains(field), "{yaml}: {e}");
        }
    }

    /// Files written before `manager.addrs`, `cluster_id: Option` and
    /// `manager.refresh_interval` still load, each as its new spelling.
    #[test]
    fn old_spellings_still_load() {
        let old = "manager:\n  addr: manager:65003\n  cluster_id: 0\n  seed_peer_refresh_interval: 3s\n";
        let c = load_yaml(old).unwrap();
        assert_eq!(c.manager.addrs, ["manager:65003"]);
        assert_eq!(c.manager.cluster_id, None);
        assert_eq!(c.manager.refresh_interval, Duration::from_secs(3));
        assert_eq!(load_yaml("manager:\n  cluster_id: null\n").unwrap().manager.cluster_id, None);
        let e = load_yaml("manager:\n  addr: http://m:1\n").unwrap_err();
        assert!(e.contains("manager.addrs[0]"), "{e}");
        let e = load_yaml("manager:\n  addr: m:1\n  addrs: [m:2]\n").unwrap_err();
        assert!(e.contains("manager.addr: is the old name of manager.addrs"), "{e}");
        // The environment spelling of the old key, over a file with the new one.
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "manager:\n  addrs: [a:1, b:1]\n").unwrap();
        let env = [
            ("SCHEDULER__MANAGER__ADDR", "c:1"),
            ("SCHEDULER__MANAGER__CLUSTER_ID", "0"),
            ("SCHEDULER__MANAGER__SEED_PEER_REFRESH_INTERVAL", "500ms"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = load::<Config, _>(Some(f.path()), ENV_PREFIX, env, &[]).unwrap();
        assert_eq!((c.manager.addrs.as_slice(), c.manager.cluster_id), (&["c:1".to_string()][..], None));
        assert_eq!(c.manager.refresh_interval, Duration::from_millis(500));
    }

    #[test]
    fn seed_peers_and_durations_parse() {
        let c = load_yaml("seed_peers:\n  - ip: 10.0.0.1\n  - ip: 10.0.0.2\n    port: 4100\ngc:\n  peer_ttl: 10m\n")
            .unwrap();
        assert_eq!(c.seed_peers[0].addr(), "10.0.0.1:4000".parse().unwrap());
        assert_eq!(c.seed_peers[1].port, 4100);
        assert_eq!(c.gc.peer_ttl, Duration::from_secs(600));
    }

    #[test]
    fn errors_name_the_field() {
        let e = load_yaml("scheduling:\n  candidate_parent_limit: 0\n").unwrap_err();
        assert!(e.contains("scheduling.candidate_parent_limit"), "{e}");
        let e = load_yaml("scheduling:\n  back_to_source_limit: 0\n").unwrap_err();
        assert!(e.contains("scheduling.back_to_source_limit"), "{e}");
        let e = load_yaml("gc:\n  interval: 0s\n").unwrap_err();
        assert!(e.contains("gc.interval"), "{e}");
        let e = load_yaml("seed_peers:\n  - ip: 10.0.0.1\n  - ip: 10.0.0.1\n").unwrap_err();
        assert!(e.contains("seed_peers[1]"), "{e}");
        let e = load_yaml("seed_peers:\n  - ip: nope\n").unwrap_err();
        assert!(e.contains("seed_peers"), "{e}");
        let e = load_yaml("scheduling:\n  candidate_parents: 3\n").unwrap_err();
        assert!(e.contains("candidate_parents"), "{e}");
        for (yaml, field) in [
            ("limits:\n  max_url_bytes: 10\n", "limits.max_url_bytes"),
            ("limits:\n  max_tasks_per_host: 0\n", "limits.max_tasks_per_host"),
            ("limits:\n  max_peers_per_host: 0\n", "limits.max_peers_per_host"),
        ] {
            let e = load_yaml(yaml).unwrap_err();
            assert!(e.contains(field), "{yaml}: {e}");
        }
    }
}
