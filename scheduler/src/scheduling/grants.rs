//! The piece grants a child gets with its candidate parents
//! (`darter_common::tls::grant`): one per parent, naming the task, the
//! parent and the child, signed with this scheduler's certificate key. In
//! plaintext mode there is no key and no grant; parents then ask for none.

use darter_common::task_id::TaskId;
use darter_common::tls::grant::Issuer;

/// Grants for one child's answer.
#[derive(Debug, Clone, Copy)]
pub struct Grants<'a> {
    issuer: Option<&'a Issuer>,
    child_host_id: &'a str,
}

impl<'a> Grants<'a> {
    /// Grants for `child_host_id` signed by `issuer` (none without one).
    pub fn new(issuer: Option<&'a Issuer>, child_host_id: &'a str) -> Self {
        Grants { issuer, child_host_id }
    }

    /// No grants (plaintext mode, tests).
    pub fn none() -> Self {
        Grants { issuer: None, child_host_id: "" }
    }

    /// The grant to fetch `task_id` from `parent_host_id`, encoded for the
    /// piece request header; empty without an issuer or when signing failed
    /// (logged: the parent will refuse, and the child reschedules).
    pub fn issue(&self, task_id: &TaskId, parent_host_id: &str) -> String {
        let Some(issuer) = self.issuer else { return String::new() };
        issuer.issue(task_id.as_str(), parent_host_id, self.child_host_id).unwrap_or_else(|e| {
            tracing::error!(%task_id, parent = parent_host_id, child = self.child_host_id, error = %e, "cannot sign a piece grant");
            String::new()
        })
    }
}
