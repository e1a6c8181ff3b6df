//! What the REST API returns: stored rows as JSON, times as RFC 3339, never a
//! password hash or token hash.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{Cluster, ClusterConfig, Member, MemberKind, MemberState, Role, Scopes, Timestamp, Token, User};

/// RFC 3339, UTC, whole seconds.
pub fn time(t: Timestamp) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(t.0).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub config: ClusterConfig,
    pub scopes: Scopes,
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Cluster> for ClusterView {
    fn from(c: Cluster) -> Self {
        Self {
            id: c.id,
            name: c.name,
            description: c.description,
            config: c.config,
            scopes: c.scopes,
            is_default: c.is_default,
            created_at: time(c.created_at),
            updated_at: time(c.updated_at),
        }
    }
}

/// A scheduler or seed peer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub id: i64,
    #[schema(value_type = String, example = "scheduler")]
    pub kind: MemberKind,
    pub cluster_id: i64,
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    /// Seed peers only: the piece data port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_port: Option<u16>,
    pub idc: String,
    pub location: String,
    #[schema(value_type = String, example = "active")]
    pub state: MemberState,
    pub last_keepalive_at: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            cluster_id: m.cluster_id,
            hostname: m.hostname.clone(),
            ip: m.ip.to_string(),
            port: m.port,
            download_port: m.download_port,
            idc: m.idc.clone(),
            location: m.location.clone(),
            state: m.state,
            last_keepalive_at: time(m.last_keepalive_at),
            created_at: time(m.created_at),
            updated_at: time(m.updated_at),
        }
    }
}

/// A user (never its password).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub name: String,
    #[schema(value_type = String, example = "guest")]
    pub role: Role,
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self { id: u.id, name: u.name.clone(), role: u.role, created_at: time(u.created_at) }
    }
}

/// A personal access token (its secret only once, on creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub user_id: i64,
    /// `null`: never expires.
    pub expires_at: Option<String>,
    pub created_at: String,
    /// The secret (`dpat_...`), in the creation answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<&Token> for TokenView {
    fn from(t: &Token) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            user_id: t.user_id,
            expires_at: t.expires_at.map(time),
            created_at: time(t.created_at),
            token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time(Timestamp(1_795_000_000_999)), "2026-11-18T11:06:40Z");
    }
}
