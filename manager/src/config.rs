//! The manager's config: `manager.yaml`, `MANAGER__*` env overrides, CLI
//! flags. Loaded as read -> defaults -> validate; every field has a documented default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use darter_common::config::{FieldError, Validate};
use darter_common::telemetry::{LogConfig, TracingConfig};
use darter_common::units::duration;
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
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            root_password: None,
            root_password_file: PathBuf::from("/var/lib/darter/manager/root-password"),
            jwt_secret: None,
            token_ttl: Duration::from_secs(24 * 3600),
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
    /// The host name in the manager's own certificate (default: the OS host name).
    pub hostname: Option<String>,
}

impl Default for ManagerTlsConfig {
    fn default() -> Self {
        Self {
            mode: darter_common::tls::TlsMode::Mtls,
            ca_cert_file: None,
            ca_key_file: None,
            cert_validity: Duration::from_secs(24 * 3600),
            max_token_ttl: Duration::from_secs(30 * 24 * 3600),
            hostname: None,
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
