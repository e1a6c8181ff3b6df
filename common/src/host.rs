//! This machine as a member advertises itself to the rest of the cluster: its
//! host name, and the IP other hosts reach it on when the listener it serves on
//! is bound to every interface. Both the scheduler's and dfdaemon's `host:`
//! sections carry `hostname: Option<String>` and `ip: Option<IpAddr>`, checked
//! by [`validate`].

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use crate::config::FieldError;

/// Checks a config's `host.hostname` and `host.ip` (`section` is `host`):
/// a name, when given, is not blank; an IP, when given, is one others can
/// reach (not `0.0.0.0`/`::`).
pub fn validate(section: &str, hostname: Option<&str>, ip: Option<IpAddr>) -> Result<(), FieldError> {
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        return Err(FieldError::new(format!("{section}.ip"), "must be a reachable address, not 0.0.0.0/::"));
    }
    if hostname.is_some_and(|h| h.trim().is_empty()) {
        return Err(FieldError::new(
            format!("{section}.hostname"),
            "must not be empty (leave it out for the OS host name)",
        ));
    }
    Ok(())
}

/// The OS host name, or `localhost` when it cannot be read.
pub fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The IP to advertise for a listener bound to `bound`: `bound` itself when it
/// names one interface; for `0.0.0.0`/`::`, the address of the interface that
/// carries the default route (the first non-loopback one others are likely to
/// reach); `127.0.0.1` on a machine with no route at all.
pub fn advertised_ip(bound: IpAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    default_route_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The source address the kernel picks towards a public address. "Connecting"
/// a UDP socket only selects a route: no packet is sent.
fn default_route_ip() -> Option<IpAddr> {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a real destination.
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_bind_address_is_advertised_as_is() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(advertised_ip(ip), ip);
        assert_eq!(advertised_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn host_facts_are_checked_naming_the_field() {
        validate("host", None, None).unwrap();
        validate("host", Some("h"), Some("10.0.0.1".parse().unwrap())).unwrap();
        assert_eq!(validate("host", None, Some("::".parse().unwrap())).unwrap_err().field, "host.ip");
        assert_eq!(validate("host", Some(" "), None).unwrap_err().field, "host.hostname");
    }

    #[test]
    fn an_unspecified_bind_address_gets_a_reachable_one() {
        let ip = advertised_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(!ip.is_unspecified(), "{ip}");
        assert!(!os_hostname().is_empty());
    }
}
