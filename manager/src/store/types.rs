//! Domain types the store reads and writes. Inputs (`NewCluster`,
//! `Registration`, `NewUser`, `NewToken`) are validated once by the store
//! before any SQL runs.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};

/// Milliseconds since the Unix epoch (UTC): how every backend stores time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// `self` minus `d`, saturating at the epoch's lower bound.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// `self` plus `d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// A wall-clock time.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// Scheduling limits handed to the schedulers of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ClusterConfig {
    /// How many candidate parents a peer is offered at once (the cluster's
    /// schedulers apply it from their next refresh on).
    pub candidate_parent_limit: u32,
    /// How many peers of one task may fetch from the origin at once (seed
    /// peers not counted).
    pub back_to_source_limit: u32,
    /// How many downloading peers of one task a parent is handed to at once.
    pub load_limit: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { candidate_parent_limit: 4, back_to_source_limit: 1, load_limit: 32 }
    }
}

/// Which peers a cluster serves (see ARCHITECTURE.md §5 for the matching order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Scopes {
    /// One or several IDCs, `|`-separated.
    pub idc: String,
    /// `country|province|city|...`, matched by longest prefix.
    pub location: String,
    /// CIDRs such as `10.0.0.0/8`.
    pub cidrs: Vec<String>,
    /// Hostname regexes.
    pub hostnames: Vec<String>,
}

/// A cluster as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub config: ClusterConfig,
    pub scopes: Scopes,
    pub is_default: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a caller gives to create a cluster or replace one's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewCluster {
    pub name: String,
    pub description: String,
    pub config: ClusterConfig,
    pub scopes: Scopes,
    /// Making a cluster the default takes the flag from the previous default.
    pub is_default: bool,
}

/// Longest name, hostname or user name the store accepts (MySQL `VARCHAR(255)`).
pub const MAX_NAME_LEN: usize = 255;

/// Checks a name (cluster, host or user): non-empty, at most [`MAX_NAME_LEN`]
/// bytes, no control characters; the error names `field`.
pub fn validate_name(field: &'static str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid(field, "must not be empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreError::Invalid(field, format!("longer than {MAX_NAME_LEN} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(field, "contains control characters".into()));
    }
    Ok(())
}

impl NewCluster {
    pub(crate) fn validate(&self) -> Result<()> {
        validate_name("name", &self.name)?;
        for cidr in &self.scopes.cidrs {
            validate_cidr(cidr).map_err(|msg| StoreError::Invalid("scopes.cidrs", format!("{cidr:?}: {msg}")))?;
        }
        if self.scopes.hostnames.iter().any(|h| h.is_empty()) {
            return Err(StoreError::Invalid("scopes.hostnames", "empty pattern".into()));
        }
        Ok(())
    }
}

fn validate_cidr(cidr: &str) -> Result<(), &'static str> {
    let (addr, len) = cidr.split_once('/').ok_or("expected ADDRESS/PREFIX")?;
    let addr: IpAddr = addr.parse().map_err(|_| "bad address")?;
    let len: u8 = len.parse().map_err(|_| "bad prefix length")?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err("prefix length too long");
    }
    Ok(())
}

/// The two kinds of registered cluster members, each with its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberKind {
    Scheduler,
    SeedPeer,
}

impl MemberKind {
    pub(crate) fn table(self) -> &'static str {
        match self {
            MemberKind::Scheduler => "schedulers",
            MemberKind::SeedPeer => "seed_peers",
        }
    }
}

/// Whether a member may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    Active,
    Inactive,
}

impl MemberState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MemberState::Active => "active",
            MemberState::Inactive => "inactive",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(MemberState::Active),
            "inactive" => Ok(MemberState::Inactive),
            other => Err(corrupt_value("state", other)),
        }
    }
}

/// What a scheduler or seed peer announces when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub kind: MemberKind,
    pub cluster_id: i64,
    pub hostname: String,
    pub ip: IpAddr,
    pub port: u16,
    /// Seed peers only: the port serving piece data. Ignored for schedulers.
    pub download_port: Option<u16>,
    pub idc: String,
    pub location: String,
}

impl Registration {
    pub(crate) fn validate(&self) -> Result<()> {
        validate_name("hostname", &self.hostname)?;
        if self.port == 0 {
            return Err(StoreError::Invalid("port", "must not be 0".into()));
        }
        match (self.kind, self.download_port) {
            (MemberKind::SeedPeer, None | Some(0)) => {
                Err(StoreError::Invalid("download_port", "a seed peer needs a download port".into()))
            }
            _ => Ok(()),
        }
    }
}

/// A registered scheduler or seed peer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: i64,
    pub kind: MemberKind,
    pub cluster_id: i64,
    pub hostname: String,
    pub ip: IpAddr,
    pub port: u16,
    /// `Some` for seed peers, `None` for schedulers.
    pub download_port: Option<u16>,
    pub idc: String,
    pub location: String,
    pub state: MemberState,
    pub last_keepalive_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user's role: `root` may do everything, `guest` may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Root,
    Guest,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Guest => "guest",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "root" => Ok(Role::Root),
            "guest" => Ok(Role::Guest),
            other => Err(corrupt_value("role", other)),
        }
    }
}

/// The name of the user [`super::Store::ensure_root_user`] creates.
pub const ROOT_USER: &str = "root";

/// A user as stored. The password hash is opaque to the store (argon2 PHC
/// string, produced by the auth layer).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: Timestamp,
    /// Sign-in tokens issued before this are refused (the password changed).
    pub sessions_valid_after: Timestamp,
}

// Hand-written so a hash never reaches a log line.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What a caller gives to create a user.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

impl NewUser {
    pub(crate) fn validate(&self) -> Result<()> {
        validate_name("name", &self.name)?;
        if self.password_hash.is_empty() {
            return Err(StoreError::Invalid("password_hash", "must not be empty".into()));
        }
        Ok(())
    }
}

/// A personal access token as stored: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub token_hash: String,
    pub user_id: i64,
    /// `None`: never expires.
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl Token {
    /// Whether the token may no longer be used at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a caller gives to create a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub token_hash: String,
    pub user_id: i64,
    pub expires_at: Option<Timestamp>,
}

impl NewToken {
    pub(crate) fn validate(&self) -> Result<()> {
        validate_name("name", &self.name)?;
        if self.token_hash.is_empty() || self.token_hash.len() > MAX_NAME_LEN {
            return Err(StoreError::Invalid("token_hash", format!("must be 1 to {MAX_NAME_LEN} bytes")));
        }
        Ok(())
    }
}

fn corrupt_value(column: &str, value: &str) -> StoreError {
    StoreError::Db(format!("stored {column} {value:?} is not a known value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_validation() {
        assert!(validate_cidr("10.0.0.0/8").is_ok());
        assert!(validate_cidr("fd00::/64").is_ok());
        assert!(validate_cidr("10.0.0.0/33").is_err());
        assert!(validate_cidr("10.0.0.0").is_err());
        assert!(validate_cidr("nope/8").is_err());
    }

    #[test]
    fn config_defaults_fill_missing_json_fields() {
        let c: ClusterConfig = serde_json::from_str(r#"{"load_limit": 7}"#).unwrap();
        assert_eq!(c, ClusterConfig { load_limit: 7, ..ClusterConfig::default() });
    }
}
