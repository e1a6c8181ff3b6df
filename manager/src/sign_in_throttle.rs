//! Backoff after failed sign-ins (and failed checks of one's own old
//! password), so passwords cannot be guessed at the speed of argon2.
//!
//! Failures are counted under two keys: the client address with the user name,
//! and the client address alone (an IPv6 address counts by its /64, which one
//! subscriber usually holds whole). Past a key's free failures
//! (`failures_per_name`, `failures_per_address`), each further failure makes
//! the key wait `backoff`, doubling up to `max_backoff`. An attempt while a
//! key waits is refused with how long is left (a 429 with `Retry-After`)
//! before any password is checked, and does not count. A success clears the
//! address-and-name key (not the address key: an attacker with an account of
//! its own must not reset its address by signing in). A key with no failure
//! for `forget_after` starts over.
//!
//! There is deliberately no key for a name alone: an attacker hammering
//! `root` from one address would then lock root out from everywhere. Another
//! address is never slowed down by this one's failures; what bounds an
//! attacker with many addresses is the password-check queue
//! ([`crate::password`]).
//!
//! At most `max_tracked` keys of each kind are kept; when full, expired ones
//! are dropped, then the one quiet longest. Names are kept as keyed hashes.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::SignInThrottleConfig;

/// A client address as counted: IPv4 whole, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4))),
            // Tagged with a bit no IPv4 address has, so the two never meet.
            IpAddr::V6(v6) => Self((u128::from(v6) & !u128::from(u64::MAX)) | (1 << 63)),
        }
    }
}

/// Failures counted under one key.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    wait_until: Option<Instant>,
}

/// The throttle; shared behind the `Auth` that owns it.
#[derive(Debug)]
pub struct SignInThrottle {
    config: SignInThrottleConfig,
    hasher: RandomState,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_name: HashMap<(ClientKey, u64), Record>,
    by_address: HashMap<ClientKey, Record>,
}

impl SignInThrottle {
    /// A throttle with `config`'s limits.
    pub fn new(config: SignInThrottleConfig) -> Self {
        Self { config, hasher: RandomState::new(), state: Mutex::new(State::default()) }
    }

    /// `Err(how long to wait)` while `name` from `client` must wait.
    pub fn check(&self, client: IpAddr, name: &str, now: Instant) -> Result<(), Duration> {
        let (address, name) = (ClientKey::from(client), self.hasher.hash_one(name));
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let left = |r: Option<&Record>| {
            r.filter(|r| !self.forgotten(r, now)).and_then(|r| r.wait_until).and_then(|t| t.checked_duration_since(now))
        };
        match left(state.by_name.get(&(address, name))).max(left(state.by_address.get(&address))) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt for `name` from `client`.
    pub fn failed(&self, client: IpAddr, name: &str, now: Instant) {
        let (address, name) = (ClientKey::from(client), self.hasher.hash_one(name));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (max, free_name, free_address) =
            (self.config.max_tracked, self.config.failures_per_name, self.config.failures_per_address);
        let record = entry(&mut state.by_name, (address, name), now, max, self.config.forget_after);
        self.count(record, free_name, now);
        let record = entry(&mut state.by_address, address, now, max, self.config.forget_after);
        self.count(record, free_address, now);
    }

    /// Clears the failures of `name` from `client` after a success.
    pub fn succeeded(&self, client: IpAddr, name: &str) {
        let key = (ClientKey::from(client), self.hasher.hash_one(name));
        self.state.lock().unwrap_or_else(|e| e.into_inner()).by_name.remove(&key);
    }

    /// Keys tracked: (address and name, address).
    pub fn tracked(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.by_name.len(), state.by_address.len())
    }

    fn forgotten(&self, r: &Record, now: Instant) -> bool {
        now.saturating_duration_since(r.last_failure) >= self.config.forget_after
    }

    fn count(&self, record: &mut Record, free: u32, now: Instant) {
        if self.forgotten(record, now) {
            *record = Record { failures: 0, last_failure: now, wait_until: None };
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        if record.failures >= free {
            let doublings = (record.failures - free).min(31);
            let wait = self.config.backoff.saturating_mul(1 << doublings).min(self.config.max_backoff);
            record.wait_until = Some(now + wait);
        }
    }
}

/// The record under `key`, made room for when the map is full: first by
/// dropping the forgotten, then the one quiet longest.
fn entry<K: std::hash::Hash + Eq + Copy>(
    map: &mut HashMap<K, Record>,
    key: K,
    now: Instant,
    max: usize,
    forget_after: Duration,
) -> &mut Record {
    if !map.contains_key(&key) && map.len() >= max {
        map.retain(|_, r| now.saturating_duration_since(r.last_failure) < forget_after);
        while map.len() >= max {
            let Some(oldest) = map.iter().min_by_key(|(_, r)| r.last_failure).map(|(k, _)| *k) else { break };
            map.remove(&oldest);
        }
    }
    map.entry(key).or_insert(Record { failures: 0, last_failure: now, wait_until: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn throttle() -> SignInThrottle {
        SignInThrottle::new(SignInThrottleConfig {
            failures_per_name: 3,
            failures_per_address: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            forget_after: Duration::from_secs(60),
            max_tracked: 100,
        })
    }

    #[test]
    fn free_failures_then_a_doubling_wait_up_to_the_cap() {
        let (t, t0) = (throttle(), Instant::now());
        let s = Duration::from_secs;
        t.failed(A, "root", t0);
        t.failed(A, "root", t0);
        assert_eq!(t.check(A, "root", t0), Ok(()), "the first failures go through at once");
        t.failed(A, "root", t0);
        assert_eq!(t.check(A, "root", t0), Err(s(1)));
        assert_eq!(t.check(A, "root", t0 + s(1)), Ok(()), "the wait is over");
        t.failed(A, "root", t0 + s(1));
        assert_eq!(t.check(A, "root", t0 + s(1)), Err(s(2)));
        for i in 0..10 {
            t.failed(A, "root", t0 + s(10 + i));
        }
        assert_eq!(t.check(A, "root", t0 + s(19)), Err(s(8)), "capped at max_backoff");
        // The per-address key waits too now, for every name from A.
        assert!(t.check(A, "guest", t0 + s(19)).is_err());
        // Never for another address, whatever the name.
        assert_eq!(t.check(B, "root", t0 + s(19)), Ok(()));
        // Quiet for forget_after: starts over.
        assert_eq!(t.check(A, "root", t0 + s(19 + 60)), Ok(()));
    }

    #[test]
    fn a_success_clears_the_name_but_not_the_address() {
        let (t, t0) = (throttle(), Instant::now());
        for name in ["a", "b", "c", "d"] {
            t.failed(A, name, t0);
        }
        t.failed(A, "root", t0);
        t.failed(A, "root", t0);
        t.succeeded(A, "root");
        assert_eq!(t.check(A, "root", t0), Err(Duration::from_secs(2)), "six failures from A: the address waits");
        assert_eq!(t.check(A, "root", t0 + Duration::from_secs(2)), Ok(()));
        assert_eq!(t.tracked(), (4, 1));
    }

    #[test]
    fn ipv6_counts_by_its_slash_64_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ClientKey::from(ip("2001:db8:1:2::1")), ClientKey::from(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(ClientKey::from(ip("2001:db8:1:2::1")), ClientKey::from(ip("2001:db8:1:3::1")));
        assert_eq!(ClientKey::from(ip("::ffff:10.0.0.1")), ClientKey::from(A));
        assert_ne!(ClientKey::from(ip("::")), ClientKey::from(ip("0.0.0.0")));
        assert_ne!(ClientKey::from(ip("::")), ClientKey::from(ip("0.0.0.1")));
    }

    #[test]
    fn the_tables_stay_bounded() {
        let t = SignInThrottle::new(SignInThrottleConfig { max_tracked: 10, ..throttle().config });
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            t.failed(ip, &format!("user{i}"), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.tracked(), (10, 10));
        // The newest are the ones kept.
        t.failed(IpAddr::V4(std::net::Ipv4Addr::from(999u32)), "user999", t0 + Duration::from_secs(1));
        assert_eq!(t.tracked(), (10, 10));
    }
}
