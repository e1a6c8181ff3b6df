//! Who may use the download socket (dfget and the daemon's local API),
//! checked per request from the caller's kernel credentials (`SO_PEERCRED`),
//! not only from the socket file's mode: a socket bind-mounted into a
//! container or widened by hand still serves only root, the daemon's own
//! user and the members of `download.socket_group` (the daemon's own group
//! when unset). A member is a process whose primary group is that group or
//! that has it among its supplementary groups (read from `/proc/<pid>/status`
//! of the connecting process).

use std::os::unix::fs::MetadataExt as _;

use tonic::{Request, Status};

/// The rule for one daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAccess {
    own_uid: u32,
    group: u32,
}

impl SocketAccess {
    /// Root, this process's user, and members of `group` (this process's
    /// group when `None`).
    pub fn new(group: Option<u32>) -> Self {
        let me = std::fs::metadata("/proc/self");
        let (own_uid, own_gid) = me.map_or((0, 0), |m| (m.uid(), m.gid()));
        SocketAccess { own_uid, group: group.unwrap_or(own_gid) }
    }

    /// Whether a caller with these credentials may use the socket.
    pub fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        uid == 0
            || uid == self.own_uid
            || gid == self.group
            || pid.is_some_and(|pid| supplementary_groups(pid).contains(&self.group))
    }

    /// Checks a request's caller; a request without credentials (not over
    /// the unix socket, e.g. in-process) passes.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(cred) =
            request.extensions().get::<tonic::transport::server::UdsConnectInfo>().and_then(|i| i.peer_cred)
        else {
            return Ok(());
        };
        if self.allows(cred.uid(), cred.gid(), cred.pid()) {
            return Ok(());
        }
        tracing::warn!(uid = cred.uid(), gid = cred.gid(), pid = ?cred.pid(), "download socket caller refused");
        Err(Status::permission_denied(format!(
            "uid {} (gid {}) may not use this dfdaemon: only root, its own user and members of group {} \
             (download.socket_group)",
            cred.uid(),
            cred.gid(),
            self.group
        )))
    }
}

/// The supplementary groups of process `pid` (empty when unreadable).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// A group given by name (from `/etc/group`) or number.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let table = std::fs::read_to_string("/etc/group").map_err(|e| format!("cannot read /etc/group: {e}"))?;
    table
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| format!("no group named {group:?} in /etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_the_owner_and_the_group_are_allowed_others_are_not() {
        let access = SocketAccess { own_uid: 1000, group: 2000 };
        assert!(access.allows(0, 5, None));
        assert!(access.allows(1000, 5, None));
        assert!(access.allows(1234, 2000, None));
        assert!(!access.allows(1234, 5, None));
        // This test process's supplementary groups decide for its own pid.
        let me = std::process::id() as i32;
        let mine = supplementary_groups(me);
        if let Some(g) = mine.first() {
            assert!(SocketAccess { own_uid: 1000, group: *g }.allows(1234, 5, Some(me)));
        }
        assert!(!access.allows(1234, 5, Some(me)) || mine.contains(&2000));
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(resolve_group("4242"), Ok(4242));
        assert_eq!(resolve_group("root"), Ok(0));
        assert!(resolve_group("no-such-group-darter").is_err());
    }
}
