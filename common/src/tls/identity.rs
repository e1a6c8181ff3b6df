//! Who a certificate says its holder is: a role in a cluster on a host,
//! written as one URI subject alternative name,
//! `spiffe://darter/cluster/<id>/<role>/<host>`.
//!
//! Peers are told apart by this name only, never by the IP addresses or DNS
//! names a certificate may carry: a manager acting as CA never signs an
//! address or name the caller asked for (the mistake of GHSA-255v-qv84-29p5),
//! so an address would prove nothing.

use std::fmt;

/// The URI scheme and trust domain of a Darter identity.
const PREFIX: &str = "spiffe://darter/cluster/";

/// The longest host name an identity carries (a DNS name's limit).
pub const MAX_HOST_LEN: usize = 253;

/// What a member is, which decides what it may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The control plane; also the CA when it enrolls members.
    Manager,
    /// Plans a cluster's downloads.
    Scheduler,
    /// A dfdaemon that fetches from the origin for its cluster.
    SeedPeer,
    /// A dfdaemon.
    Peer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Manager, Role::Scheduler, Role::SeedPeer, Role::Peer];

    /// The name in identities, config and the API: `manager`, `scheduler`,
    /// `seed_peer`, `peer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Scheduler => "scheduler",
            Role::SeedPeer => "seed_peer",
            Role::Peer => "peer",
        }
    }

    /// Whether this role is one of the dfdaemon roles (peer or seed peer).
    pub fn is_daemon(self) -> bool {
        matches!(self, Role::Peer | Role::SeedPeer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (expected one of manager, scheduler, seed_peer, peer)"))
    }
}

/// A member's identity: role, cluster and host. The manager's cluster is 0:
/// it serves every cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// What the member is.
    pub role: Role,
    /// The scheduler cluster it belongs to (0 for the manager).
    pub cluster_id: u64,
    /// Its host name.
    pub host: String,
}

impl Identity {
    /// An identity, with the host name checked ([`check_host`]).
    pub fn new(role: Role, cluster_id: u64, host: &str) -> Result<Self, String> {
        check_host(host)?;
        Ok(Identity { role, cluster_id, host: host.to_owned() })
    }

    /// The URI subject alternative name that carries it.
    pub fn to_uri(&self) -> String {
        format!("{PREFIX}{}/{}/{}", self.cluster_id, self.role, self.host)
    }

    /// Parses [`Identity::to_uri`]'s form; anything else is an error.
    pub fn from_uri(uri: &str) -> Result<Self, String> {
        let rest = uri.strip_prefix(PREFIX).ok_or_else(|| format!("{uri:?} is not a Darter identity"))?;
        let mut parts = rest.splitn(3, '/');
        let (Some(cluster), Some(role), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{uri:?}: expected {PREFIX}<cluster>/<role>/<host>"));
        };
        let cluster_id = cluster.parse::<u64>().map_err(|_| format!("{uri:?}: cluster {cluster:?} is not a number"))?;
        Identity::new(role.parse()?, cluster_id, host).map_err(|e| format!("{uri:?}: {e}"))
    }

    /// The identity in a certificate (DER): its one Darter URI subject
    /// alternative name. A certificate with none, or with two, has none.
    pub fn from_certificate(der: &[u8]) -> Result<Self, String> {
        Ok(super::certificate::Facts::parse(der)?.identity)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} of cluster {}", self.role, self.host, self.cluster_id)
    }
}

/// A host name fit for an identity: 1 to 253 characters of ASCII letters,
/// digits, `.`, `-` and `_`, not starting with `.` or `-`.
pub fn check_host(host: &str) -> Result<(), String> {
    let ok_chars = host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if host.is_empty() || host.len() > MAX_HOST_LEN || !ok_chars || host.starts_with(['.', '-']) {
        return Err(format!(
            "host name {:?} must be 1 to {MAX_HOST_LEN} letters, digits, '.', '-' or '_', not starting with '.' or '-'",
            host.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_round_trips_through_its_uri() {
        for role in Role::ALL {
            let id = Identity::new(role, 7, "node-1.example").unwrap();
            assert_eq!(Identity::from_uri(&id.to_uri()).unwrap(), id);
        }
        assert_eq!(Identity::new(Role::SeedPeer, 3, "h").unwrap().to_uri(), "spiffe://darter/cluster/3/seed_peer/h");
    }

    #[test]
    fn malformed_identities_are_refused() {
        for uri in [
            "spiffe://other/cluster/1/peer/h",
            "spiffe://darter/cluster/x/peer/h",
            "spiffe://darter/cluster/1/admin/h",
            "spiffe://darter/cluster/1/peer/",
            "spiffe://darter/cluster/1/peer/a/b",
            "spiffe://darter/cluster/1/peer/-h",
            "spiffe://darter/cluster/1",
        ] {
            assert!(Identity::from_uri(uri).is_err(), "{uri}");
        }
        assert!(check_host(&"a".repeat(254)).is_err());
        assert!(check_host(&"a".repeat(253)).is_ok());
    }
}
