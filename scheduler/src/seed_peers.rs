//! The seed peers this scheduler trusts: those at configured addresses
//! (`seed_peers`) and those the manager lists as active in its cluster.
//!
//! Being a seed grants origin access and a scoring bonus, so a host counts as
//! one only while its upload address is in this set, whatever it announces;
//! when the manager stops listing a seed, it stops counting (see
//! [`crate::resource::State::reclassify_seeds`]). The list's order is what
//! [`crate::scheduling::seed_order`] hashes task IDs over: the configured
//! seeds in config order, then the manager's sorted, so replicas with the same
//! config and manager agree on which seed a task goes to. With mutual TLS,
//! hosts that announced with a seed peer's certificate are seeds too, from
//! their first announcement ([`crate::resource::host::trigger_seeds`] puts
//! them after this list).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use darter_common::sync::RwLockExt as _;

/// The trusted seed addresses; see the module doc.
#[derive(Debug)]
pub struct SeedPeers {
    configured: Vec<SocketAddr>,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Listed by the manager, sorted, without the configured ones.
    from_manager: Vec<SocketAddr>,
    /// Configured, then `from_manager`.
    all: Arc<[SocketAddr]>,
}

/// How a new manager list changed the set.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Seeds that count now and did not before.
    pub added: Vec<SocketAddr>,
    /// Seeds that no longer count.
    pub removed: Vec<SocketAddr>,
}

impl SeedPeers {
    /// The configured seeds (upload API addresses), nothing from a manager yet.
    pub fn new(configured: Vec<SocketAddr>) -> Self {
        let all = configured.clone().into();
        Self { configured, state: RwLock::new(State { from_manager: Vec::new(), all }) }
    }

    /// Every trusted seed, in the order seeds are picked by.
    pub fn all(&self) -> Arc<[SocketAddr]> {
        self.read().all.clone()
    }

    /// Whether `addr` (a host's IP and upload port) is a trusted seed.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.read().all.contains(&addr)
    }

    /// Replaces the manager's part of the set with `listed`; `None` when
    /// nothing changed.
    pub fn set_from_manager(&self, mut listed: Vec<SocketAddr>) -> Option<Change> {
        listed.retain(|a| !self.configured.contains(a));
        listed.sort();
        listed.dedup();
        let mut state = self.state.write_locked();
        if state.from_manager == listed {
            return None;
        }
        let change = Change {
            added: listed.iter().filter(|a| !state.from_manager.contains(a)).copied().collect(),
            removed: state.from_manager.iter().filter(|a| !listed.contains(a)).copied().collect(),
        };
        state.all = self.configured.iter().chain(&listed).copied().collect();
        state.from_manager = listed;
        Some(change)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read_locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn manager_seeds_join_and_leave_the_configured_ones() {
        let seeds = SeedPeers::new(vec![a("10.0.0.9:4000")]);
        assert!(seeds.contains(a("10.0.0.9:4000")) && !seeds.contains(a("10.0.0.1:4000")));

        let change = seeds.set_from_manager(vec![a("10.0.0.2:4000"), a("10.0.0.1:4000"), a("10.0.0.9:4000")]);
        assert_eq!(change, Some(Change { added: vec![a("10.0.0.1:4000"), a("10.0.0.2:4000")], removed: vec![] }));
        assert_eq!(&*seeds.all(), &[a("10.0.0.9:4000"), a("10.0.0.1:4000"), a("10.0.0.2:4000")]);
        assert_eq!(seeds.set_from_manager(vec![a("10.0.0.1:4000"), a("10.0.0.2:4000")]), None, "same set");

        let change = seeds.set_from_manager(vec![a("10.0.0.2:4000")]).unwrap();
        assert_eq!(change.removed, vec![a("10.0.0.1:4000")]);
        assert!(!seeds.contains(a("10.0.0.1:4000")));
        // A configured seed never leaves, even when the manager does not list it.
        seeds.set_from_manager(Vec::new()).unwrap();
        assert_eq!(&*seeds.all(), &[a("10.0.0.9:4000")]);
    }
}
