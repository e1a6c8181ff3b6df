//! Free TCP ports for the processes the tests start.
//!
//! A port handed out by `bind(:0)` and released again comes from the
//! kernel's ephemeral range, the same range every outgoing connection of
//! every other test process draws its local port from: between the release
//! and the child's own bind, a parallel test's connection can take it
//! (seen in CI: "cannot listen on 127.0.0.1:32835: Address already in use").
//! So ports are drawn at random from below the ephemeral range, where the
//! kernel never puts a connection, and checked by binding them once.

use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;

use rand::Rng;

/// The lowest port handed out (well above the registered services people
/// run on a development machine, such as 8080 or 9090).
const LOWEST: u16 = 20_000;

/// A free TCP port on loopback, outside the kernel's ephemeral range.
pub fn free_port() -> u16 {
    let range = non_ephemeral_range();
    let mut rng = rand::rng();
    for _ in 0..1_000 {
        let port = rng.random_range(range.clone());
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    // Nearly every port below the range is taken: let the kernel choose.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Ports from [`LOWEST`] up to the start of the ephemeral range
/// (`net.ipv4.ip_local_port_range`; Linux's default starts at 32768).
fn non_ephemeral_range() -> Range<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOWEST + 1_000 { LOWEST..ephemeral_low } else { 1_024..ephemeral_low.max(2_048) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_bindable() {
        let range = non_ephemeral_range();
        for _ in 0..20 {
            let port = free_port();
            assert!(range.contains(&port), "{port} outside {range:?}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
        }
    }
}
