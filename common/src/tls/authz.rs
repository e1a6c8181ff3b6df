//! Who may call what: a service reads the caller's [`Peer`] from the request
//! and asks for a role (and a cluster). The answers are gRPC statuses:
//! `UNAUTHENTICATED` without a certificate, `PERMISSION_DENIED` with the
//! wrong one, each saying what was expected.

use tonic::{Request, Status};

use super::identity::{Identity, Role};
use super::incoming::Peer;

/// The caller of a request, as far as the server can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// The server runs in plaintext (development) mode: nobody is
    /// authenticated and nothing is checked.
    Unchecked,
    /// A member with a verified certificate.
    Member(&'a Identity),
}

impl<'a> Caller<'a> {
    /// The member's identity, `None` in plaintext mode.
    pub fn identity(self) -> Option<&'a Identity> {
        match self {
            Caller::Unchecked => None,
            Caller::Member(id) => Some(id),
        }
    }
}

/// The connection facts of a request (absent for in-process calls, which
/// count as plaintext).
pub fn peer<T>(request: &Request<T>) -> Option<&Peer> {
    request.extensions().get::<Peer>()
}

/// The caller of `request`, who must have one of `roles` and, when
/// `cluster` is given, belong to it. In plaintext mode everyone passes.
pub fn require<'a, T>(request: &'a Request<T>, roles: &[Role], cluster: Option<u64>) -> Result<Caller<'a>, Status> {
    let Some(peer) = peer(request).filter(|p| p.tls) else {
        return Ok(Caller::Unchecked);
    };
    let Some(identity) = &peer.identity else {
        return Err(Status::unauthenticated(format!(
            "this call needs a member certificate (one of: {}); present one issued by the cluster's CA",
            names(roles)
        )));
    };
    if !roles.contains(&identity.role) {
        return Err(Status::permission_denied(format!(
            "{identity} may not make this call (it needs: {})",
            names(roles)
        )));
    }
    if let Some(c) = cluster
        && identity.cluster_id != c
    {
        return Err(Status::permission_denied(format!("{identity} may not make this call in cluster {c}")));
    }
    Ok(Caller::Member(identity))
}

fn names(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}
