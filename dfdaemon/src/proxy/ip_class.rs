//! Which addresses are internal: the ranges the proxy refuses to reach unless
//! `proxy.allowed_destinations` lists them. A pure function over one address,
//! so a fuzz target can call it.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, the
//! deprecated IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
//! `2002:aabb:ccdd::`) are judged by that IPv4 address: `::ffff:127.0.0.1` is
//! loopback however it is written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address an IP is, as far as the proxy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// Globally reachable: the proxy may go there.
    Public,
    /// `0.0.0.0/8`, `::` (on most systems "this host").
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16` (RFC 1918), `fc00::/7` (unique local).
    Private,
    /// `100.64.0.0/10` (carrier-grade NAT, RFC 6598).
    SharedAddressSpace,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud instance metadata: `169.254.169.254`, `fd00:ec2::254`,
    /// `100.100.100.200`, `192.0.0.192`.
    Metadata,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`.
    Documentation,
    /// Everything else that is not globally routable: `240/4`, `192.0.0/24`,
    /// `198.18/15`, `192.88.99/24`, `100::/64`, `fec0::/10`, `64:ff9b:1::/48`.
    Reserved,
}

impl AddrClass {
    /// Whether the proxy may reach it without an allow-list entry.
    pub fn is_public(self) -> bool {
        self == Self::Public
    }

    /// A few words for messages: "a loopback address".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Public => "a public address",
            Self::Unspecified => "an unspecified (this-host) address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private-network address",
            Self::SharedAddressSpace => "a carrier-grade NAT (100.64.0.0/10) address",
            Self::LinkLocal => "a link-local address",
            Self::Metadata => "a cloud metadata address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation-range address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// The class of `ip`.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let [a, b, c, d] = ip.octets();
    match (a, b, c, d) {
        (169, 254, 169, 254) | (100, 100, 100, 200) | (192, 0, 0, 192) => AddrClass::Metadata,
        (255, 255, 255, 255) => AddrClass::Broadcast,
        (0, ..) => AddrClass::Unspecified,
        (127, ..) => AddrClass::Loopback,
        (10, ..) | (192, 168, ..) => AddrClass::Private,
        (172, b, ..) if (16..32).contains(&b) => AddrClass::Private,
        (100, b, ..) if (64..128).contains(&b) => AddrClass::SharedAddressSpace,
        (169, 254, ..) => AddrClass::LinkLocal,
        (224..=239, ..) => AddrClass::Multicast,
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => AddrClass::Documentation,
        (240..=255, ..) | (192, 0, 0, _) | (192, 88, 99, _) => AddrClass::Reserved,
        (198, 18 | 19, ..) => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    match s {
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => AddrClass::Metadata,
        [0x0064, 0xff9b, 0x0001, ..] => AddrClass::Reserved,
        [0x0100, 0, 0, 0, ..] => AddrClass::Reserved,
        [0x2001, 0x0db8, ..] => AddrClass::Documentation,
        [x, ..] if x & 0xfe00 == 0xfc00 => AddrClass::Private,
        [x, ..] if x & 0xffc0 == 0xfe80 => AddrClass::LinkLocal,
        [x, ..] if x & 0xffc0 == 0xfec0 => AddrClass::Reserved,
        [x, ..] if x & 0xff00 == 0xff00 => AddrClass::Multicast,
        // Outside 2000::/3 nothing is allocated for global unicast.
        [x, ..] if x & 0xe000 != 0x2000 => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that route to
/// it: mapped, compatible, NAT64 (well-known prefix) and 6to4.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(tail()),
        [0x0064, 0xff9b, 0, 0, 0, 0, ..] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_of_addresses() {
        use AddrClass::*;
        let table: &[(&str, AddrClass)] = &[
            // IPv4
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.15.255.255", Public),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.0", Public),
            ("192.168.1.1", Private),
            ("192.169.0.1", Public),
            ("100.63.255.255", Public),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("100.128.0.0", Public),
            ("100.100.100.200", Metadata),
            ("169.254.169.254", Metadata),
            ("169.254.0.1", LinkLocal),
            ("169.253.255.255", Public),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("192.0.0.192", Metadata),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("198.20.0.0", Public),
            ("192.88.99.1", Reserved),
            ("1.1.1.1", Public),
            ("8.8.8.8", Public),
            ("104.16.0.1", Public),
            // IPv6
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Loopback),
            ("::0.0.0.2", Unspecified),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::8.8.8.8", Public),
            ("64:ff9b:1::1", Reserved),
            ("2002:7f00:1::", Loopback),
            ("2002:a00:1::1", Private),
            ("2002:808:808::1", Public),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fd00:ec2::254", Metadata),
            ("fd00:ec2::253", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Reserved),
            ("ff02::1", Multicast),
            ("ff0e::1", Multicast),
            ("100::1", Reserved),
            ("2001:db8::1", Documentation),
            ("2001:4860:4860::8888", Public),
            ("2606:4700::1111", Public),
            ("4000::1", Reserved),
            ("1::1", Reserved),
        ];
        let wrong: Vec<String> = table
            .iter()
            .filter_map(|(ip, want)| {
                let got = classify(ip.parse().unwrap());
                (got != *want).then(|| format!("{ip}: {got:?}, want {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn only_public_is_public() {
        assert!(AddrClass::Public.is_public());
        assert!(!AddrClass::Metadata.is_public());
        assert_eq!(AddrClass::Loopback.describe(), "a loopback address");
    }
}
