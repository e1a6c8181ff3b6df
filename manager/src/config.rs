//! The manager's config: `manager.yaml`, `MANAGER__*` env overrides, CLI
//! flags. Loaded as read -> defaults -> validate; every field has a documented default.

use std::net::SocketAddr;
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
            database_url: DEFAULT_DATABASE_URL.into(),
            keepalive_grace: Duration::from_secs(15),
            expiry_interval: Duration::from_secs(1),
            inactive_gc_after: Duration::from_secs(24 * 3600),
            log: LogConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Validate for Config {
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
        self.log.validate("log")?;
        self.tracing.validate("tracing")
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
    }
}
