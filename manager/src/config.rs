//! The manager's config: `manager.yaml`, `MANAGER__*` env overrides, CLI
//! flags. Loaded as read -> defaults -> validate; every field has a documented default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use darter_common::config::{FieldError, Validate};
use darter_common::telemetry::{LogConfig, TracingConfig};
use darter_common::units::{ByteSize, duration};
use serde::{Deserialize, Serialize};

/// Prefix of environment overrides (`MANAGER__KEEPALIVE_GRACE=30s`).
pub const ENV_PREFIX: &str = "MANAGER";

/// Where the database lives when none is configured (the root install's data dir).
pub const DEFAULT_DATABASE_URL: &str = "sqlite:///var/lib/darter/manager/manager.db?mode=rwc";

/// The whole config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC API for schedulers, seed peers and dfdaemons (default `0.0.0.0:65003`).
    pub grpc_addr: SocketAddr,
    /// `/metrics` and `/healthz` (default `0.0.0.0:8081`).
    pub metrics_addr: SocketAddr,
    /// REST API (`/api/v1`), its OpenAPI document and the console (default `0.0.0.0:8080`).
    pub rest_addr: SocketAddr,
    /// `sqlite://path?mode=rwc`, `postgres://...` or `mysql://...` (default
    /// `sqlite:///var/lib/darter/manager/manager.db?mode=rwc`).
    pub database_url: String,
    /// A member whose last keepalive is older than this becomes inactive
    /// (default `15s`: three missed keepalives at the members' 5s interval).
    #[serde(with = "duration")]
    pub keepalive_grace: Duration,
    /// How often members past the grace period are looked for (default `1s`).
    #[serde(with = "duration")]
    pub expiry_interval: Duration,
    /// Inactive members not heard from for this long are deleted (default `24h`).
    #[serde(with = "duration")]
    pub inactive_gc_after: Duration,
    /// Users, tokens and the root account.
    pub auth: AuthConfig,
    /// Limits of the REST server (`rest_addr`).
    pub rest: RestConfig,
    /// `ListSchedulers` answer caching, shared through Redis when configured.
    pub cache: CacheConfig,
    /// Mutual TLS on the gRPC port and the cluster's CA.
    pub tls: ManagerTlsConfig,
    /// Logs.
    pub log: LogConfig,
    /// OpenTelemetry trace export.
    pub tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 65003).into(),
            metrics_addr: ([0, 0, 0, 0], 8081).into(),
            rest_addr: ([0, 0, 0, 0], 8080).into(),
            database_url: DEFAULT_DATABASE_URL.into(),
            keepalive_grace: Duration::from_secs(15),
            expiry_interval: Duration::from_secs(1),
            inactive_gc_after: Duration::from_secs(24 * 3600),
            auth: AuthConfig::default(),
            rest: RestConfig::default(),
            cache: CacheConfig::default(),
            tls: ManagerTlsConfig::default(),
            log: LogConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Validate for Config {
    const SECRETS: &'static [&'static str] = &["auth.root_password", "auth.jwt_secret"];

    fn validate(&self) -> Result<(), FieldError> {
        let scheme = self.database_url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb")) {
            return Err(FieldError::new(
                "database_url",
                "must start with sqlite://, postgres:// or mysql:// (credentials are not echoed)",
            ));
        }
        for (field, d) in [("keepalive_grace", self.keepalive_grace), ("expiry_interval", self.expiry_interval)] {
            if d.is_zero() {
                return Err(FieldError::new(field, "must be greater than 0"));
            }
        }
        if self.inactive_gc_after < self.keepalive_grace {
            return Err(FieldError::new("inactive_gc_after", "must not be shorter than keepalive_grace"));
        }
        self.auth.validate()?;
        self.rest.validate()?;
        self.cache.validate()?;
        self.tls.validate()?;
        self.log.validate("log")?;
        self.tracing.validate("tracing")
    }
}

/// `auth:` — sign-in tokens and the root account.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Password the `root` user gets when the database has no root yet (also
    /// `MANAGER__AUTH__ROOT_PASSWORD`). Unset: a random one is generated and
    /// written to `root_password_file`. An existing root keeps its password.
    pub root_password: Option<String>,
    /// Where a generated root password is written (mode 0600; default
    /// `/var/lib/darter/manager/root-password`).
    pub root_password_file: PathBuf,
    /// HS256 key signing sign-in tokens, at least 32 bytes. Unset: a random key
    /// is generated once and kept in the database, so every replica shares it.
    pub jwt_secret: Option<String>,
    /// How long a sign-in token is valid (default `24h`).
    #[serde(with = "duration")]
    pub token_ttl: Duration,
    /// Password hashes (argon2, about 19 MiB each while it runs) computed at
    /// once, on threads of their own (default `2`).
    pub password_checks: usize,
    /// Password checks that may wait for one of those; a sign-in beyond them
    /// is answered 429 at once (default `32`).
    pub password_check_queue: usize,
    /// Backoff after failed sign-ins, per client address.
    pub sign_in_throttle: SignInThrottleConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            root_password: None,
            root_password_file: PathBuf::from("/var/lib/darter/manager/root-password"),
            jwt_secret: None,
            token_ttl: Duration::from_secs(24 * 3600),
            password_checks: 2,
            password_check_queue: 32,
            sign_in_throttle: SignInThrottleConfig::default(),
        }
    }
}

// Hand-written so neither secret reaches a log line.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("AuthConfig")
            .field("root_password", &set(&self.root_password))
            .field("root_password_file", &self.root_password_file)
            .field("jwt_secret", &set(&self.jwt_secret))
            .field("token_ttl", &self.token_ttl)
            .field("password_checks", &self.password_checks)
            .field("password_check_queue", &self.password_check_queue)
            .field("sign_in_throttle", &self.sign_in_throttle)
            .finish()
    }
}

/// Shortest root password accepted from config.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Shortest configured JWT key.
pub const MIN_JWT_SECRET_LEN: usize = 32;

impl AuthConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(p) = &self.root_password
            && p.len() < MIN_PASSWORD_LEN
        {
            return Err(FieldError::new("auth.root_password", format!("must be at least {MIN_PASSWORD_LEN} bytes")));
        }
        if let Some(s) = &self.jwt_secret
            && s.len() < MIN_JWT_SECRET_LEN
        {
            return Err(FieldError::new("auth.jwt_secret", format!("must be at least {MIN_JWT_SECRET_LEN} bytes")));
        }
        if self.token_ttl.is_zero() {
            return Err(FieldError::new("auth.token_ttl", "must be greater than 0"));
        }
        if !(1..=MAX_PASSWORD_CHECKS).contains(&self.password_checks) {
            return Err(FieldError::new("auth.password_checks", format!("must be 1 to {MAX_PASSWORD_CHECKS}")));
        }
        self.sign_in_throttle.validate()
    }
}

/// Most password checks at once (each holds ~19 MiB while it runs).
pub const MAX_PASSWORD_CHECKS: usize = 64;

/// `auth.sign_in_throttle:` — how failed sign-ins slow down the next ones.
///
/// Failures are counted per client address and name, and per client address
/// over all names (an IPv6 address counts by its /64). Past the free
/// failures, each further one makes that key wait `backoff`, doubling up to
/// `max_backoff`; a sign-in while waiting is answered 429 with `Retry-After`
/// and is not counted. A successful sign-in clears its address and name; a
/// key with no failure for `forget_after` starts over. One address hammering
/// a name never slows down another address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignInThrottleConfig {
    /// Failed sign-ins from one address for one name before the backoff
    /// starts (default `5`).
    pub failures_per_name: u32,
    /// Failed sign-ins from one address over all names before the backoff
    /// starts for every name from it (default `20`).
    pub failures_per_address: u32,
    /// The first wait; doubles with each further failure (default `1s`).
    #[serde(with = "duration")]
    pub backoff: Duration,
    /// The longest wait (default `5m`).
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// A key without a failure for this long is forgotten (default `15m`).
    #[serde(with = "duration")]
    pub forget_after: Duration,
    /// Keys (address, address and name) kept at most; when full, the ones
    /// quiet longest are forgotten first (default `16384`, about 4 MiB).
    pub max_tracked: usize,
}

impl Default for SignInThrottleConfig {
    fn default() -> Self {
        Self {
            failures_per_name: 5,
            failures_per_address: 20,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
            max_tracked: 16384,
        }
    }
}

impl SignInThrottleConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let field = |name: &str| format!("auth.sign_in_throttle.{name}");
        if self.backoff.is_zero() {
            return Err(FieldError::new(field("backoff"), "must be greater than 0"));
        }
        if self.max_backoff < self.backoff {
            return Err(FieldError::new(field("max_backoff"), "must not be shorter than backoff"));
        }
        if self.forget_after < self.max_backoff {
            return Err(FieldError::new(field("forget_after"), "must not be shorter than max_backoff"));
        }
        if self.max_tracked == 0 {
            return Err(FieldError::new(field("max_tracked"), "must be greater than 0"));
        }
        Ok(())
    }
}

/// `rest:` — limits of the REST server, so no client holds it with slow,
/// idle, many or large requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestConfig {
    /// Open connections at most; one beyond is closed at once (default `1024`).
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 address counts by
    /// its /64) at most (default `128`).
    pub max_connections_per_address: usize,
    /// A request head must arrive whole within this; an idle keep-alive
    /// connection is closed after it too (default `10s`).
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Reading the body and answering take at most this; longer: `503
    /// timeout` (default `30s`).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Largest request head, request line and headers (default `16KiB`).
    pub max_header_size: ByteSize,
    /// Largest request body; larger: `413 too_large` (default `64KiB`).
    pub max_body_size: ByteSize,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_address: 128,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_header_size: ByteSize::kib(16),
            max_body_size: ByteSize::kib(64),
        }
    }
}

/// Smallest `rest.max_header_size`.
pub const MIN_HEADER_SIZE: u64 = 1024;

impl RestConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.max_connections == 0 {
            return Err(FieldError::new("rest.max_connections", "must be greater than 0"));
        }
        if self.max_connections_per_address == 0 || self.max_connections_per_address > self.max_connections {
            return Err(FieldError::new(
                "rest.max_connections_per_address",
                "must be greater than 0 and at most rest.max_connections",
            ));
        }
        for (field, d) in
            [("rest.header_read_timeout", self.header_read_timeout), ("rest.request_timeout", self.request_timeout)]
        {
            if d.is_zero() {
                return Err(FieldError::new(field, "must be greater than 0"));
            }
        }
        if self.max_header_size.as_u64() < MIN_HEADER_SIZE || self.max_header_size > ByteSize::mib(1) {
            return Err(FieldError::new("rest.max_header_size", format!("must be {MIN_HEADER_SIZE}B to 1MiB")));
        }
        if self.max_body_size.as_u64() == 0 || self.max_body_size > ByteSize::mib(64) {
            return Err(FieldError::new("rest.max_body_size", "must be greater than 0 and at most 64MiB"));
        }
        Ok(())
    }
}

/// `tls:` — mutual TLS on the gRPC port, and the manager as the cluster's
/// CA (enrollment with join tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerTlsConfig {
    /// `mtls` (default): every gRPC caller but an enrolling member presents a
    /// certificate of the cluster's CA. `plaintext`: nothing is authenticated
    /// and enrollment is off (development only).
    pub mode: darter_common::tls::TlsMode,
    /// The CA certificate (PEM) to sign with, with `ca_key_file`. Unset: a CA
    /// is generated once and kept in the database, shared by every replica.
    pub ca_cert_file: Option<PathBuf>,
    /// The CA's private key (PEM).
    pub ca_key_file: Option<PathBuf>,
    /// How long a member certificate is valid; members renew at two thirds
    /// (default `24h`).
    #[serde(with = "duration")]
    pub cert_validity: Duration,
    /// The longest a join token may be valid (default `720h`).
    #[serde(with = "duration")]
    pub max_token_ttl: Duration,
    /// Whether root may make join tokens that work until revoked (`ttl:
    /// never`), as the bootstrap tokens file's do while listed: what a
    /// cluster whose nodes come and go (a DaemonSet, an autoscaler) joins
    /// with (default true; false refuses to make them, and tokens made so
    /// earlier enroll no one while it is false).
    pub non_expiring_tokens: bool,
    /// The host name in the manager's own certificate (default: the OS host name).
    pub hostname: Option<String>,
    /// Join tokens kept alive from a file (a Kubernetes Secret, as kubeadm's
    /// bootstrap tokens): a YAML list of `{token, role, cluster_id,
    /// description}`, applied at start and whenever the file changes. They
    /// do not expire while they stay in the file; revoking one through REST
    /// still stops it (a revoked token is never brought back).
    pub bootstrap_tokens_file: Option<PathBuf>,
}

impl Default for ManagerTlsConfig {
    fn default() -> Self {
        Self {
            mode: darter_common::tls::TlsMode::Mtls,
            ca_cert_file: None,
            ca_key_file: None,
            cert_validity: Duration::from_secs(24 * 3600),
            max_token_ttl: Duration::from_secs(30 * 24 * 3600),
            non_expiring_tokens: true,
            hostname: None,
            bootstrap_tokens_file: None,
        }
    }
}

impl ManagerTlsConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.ca_cert_file.is_some() != self.ca_key_file.is_some() {
            return Err(FieldError::new("tls.ca_key_file", "give both ca_cert_file and ca_key_file, or neither"));
        }
        if self.cert_validity < Duration::from_secs(5) {
            return Err(FieldError::new("tls.cert_validity", "must be at least 5s"));
        }
        if self.max_token_ttl.is_zero() {
            return Err(FieldError::new("tls.max_token_ttl", "must be greater than 0"));
        }
        if let Some(h) = &self.hostname {
            darter_common::tls::identity::check_host(h).map_err(|e| FieldError::new("tls.hostname", e))?;
        }
        Ok(())
    }
}

/// `cache:` — how `ListSchedulers` answers are cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `redis://host:port/db` (or `rediss://`): answers are cached in Redis and
    /// invalidated for every replica when clusters or membership change.
    /// Unset: one replica caches in process.
    pub redis_url: Option<String>,
    /// Prefix of the manager's Redis keys, so several deployments can share
    /// one Redis; replicas of one deployment must agree (default `darter`).
    pub namespace: String,
    /// How long an answer may be served from the cache when nothing changed
    /// (default `5m`, longer than a dfdaemon's 1m refresh so refreshes hit;
    /// every change invalidates at once, this only bounds how long a missed
    /// invalidation, e.g. during a Redis outage, can be served).
    #[serde(with = "duration")]
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { redis_url: None, namespace: "darter".into(), ttl: Duration::from_secs(300) }
    }
}

impl CacheConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(FieldError::new("cache.redis_url", "must start with redis:// or rediss://"));
        }
        if self.namespace.is_empty() || self.namespace.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FieldError::new("cache.namespace", "must be non-empty, without spaces or control characters"));
        }
        if self.ttl.is_zero() {
            return Err(FieldError::new("cache.ttl", "must be greater than 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let yaml = serde_yaml_ng::to_string(&c).unwrap();
        let back: Config = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back.keepalive_grace, c.keepalive_grace);
        assert_eq!(back.database_url, c.database_url);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |c: Config| c.validate().unwrap_err().field;
        assert_eq!(bad(Config { database_url: "redis://x".into(), ..Config::default() }), "database_url");
        assert_eq!(bad(Config { keepalive_grace: Duration::ZERO, ..Config::default() }), "keepalive_grace");
        assert_eq!(bad(Config { expiry_interval: Duration::ZERO, ..Config::default() }), "expiry_interval");
        assert_eq!(bad(Config { inactive_gc_after: Duration::from_secs(1), ..Config::default() }), "inactive_gc_after");
        assert!(serde_yaml_ng::from_str::<Config>("nope: 1").is_err());
        let auth = |a: AuthConfig| bad(Config { auth: a, ..Config::default() });
        assert_eq!(
            auth(AuthConfig { root_password: Some("short".into()), ..AuthConfig::default() }),
            "auth.root_password"
        );
        assert_eq!(auth(AuthConfig { jwt_secret: Some("short".into()), ..AuthConfig::default() }), "auth.jwt_secret");
        assert_eq!(auth(AuthConfig { token_ttl: Duration::ZERO, ..AuthConfig::default() }), "auth.token_ttl");
        assert_eq!(auth(AuthConfig { password_checks: 0, ..AuthConfig::default() }), "auth.password_checks");
        let throttle = |t: SignInThrottleConfig| auth(AuthConfig { sign_in_throttle: t, ..AuthConfig::default() });
        let t = SignInThrottleConfig::default;
        assert_eq!(throttle(SignInThrottleConfig { backoff: Duration::ZERO, ..t() }), "auth.sign_in_throttle.backoff");
        assert_eq!(
            throttle(SignInThrottleConfig { max_backoff: Duration::from_millis(1), ..t() }),
            "auth.sign_in_throttle.max_backoff"
        );
        assert_eq!(
            throttle(SignInThrottleConfig { forget_after: Duration::from_secs(1), ..t() }),
            "auth.sign_in_throttle.forget_after"
        );
        assert_eq!(throttle(SignInThrottleConfig { max_tracked: 0, ..t() }), "auth.sign_in_throttle.max_tracked");
        let rest = |r: RestConfig| bad(Config { rest: r, ..Config::default() });
        let r = RestConfig::default;
        assert_eq!(rest(RestConfig { max_connections: 0, ..r() }), "rest.max_connections");
        assert_eq!(rest(RestConfig { max_connections_per_address: 2000, ..r() }), "rest.max_connections_per_address");
        assert_eq!(rest(RestConfig { header_read_timeout: Duration::ZERO, ..r() }), "rest.header_read_timeout");
        assert_eq!(rest(RestConfig { request_timeout: Duration::ZERO, ..r() }), "rest.request_timeout");
        assert_eq!(rest(RestConfig { max_header_size: ByteSize(100), ..r() }), "rest.max_header_size");
        assert_eq!(rest(RestConfig { max_body_size: ByteSize(0), ..r() }), "rest.max_body_size");
        let cache = CacheConfig { redis_url: Some("http://x".into()), ..CacheConfig::default() };
        assert_eq!(bad(Config { cache, ..Config::default() }), "cache.redis_url");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let a = AuthConfig {
            root_password: Some("hunter2hunter2".into()),
            jwt_secret: Some("k".repeat(40)),
            ..AuthConfig::default()
        };
        let shown = format!("{a:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("kkkk"), "{shown}");
    }
}
