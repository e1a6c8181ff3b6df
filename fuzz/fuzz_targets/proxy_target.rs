//! The proxy's request-target handling on arbitrary text: the path check,
//! the upstream of a mirror or forward-proxy request, the `CONNECT` target,
//! the `Range` header, `proxy.allowed_destinations` entries, and the class of
//! arbitrary IP addresses (what a proxy client sends, and what DNS answers).
//!
//! Input: lines `target`, `x-darter-registry header`, `range header`, then
//! allow-list entries; the first 16 bytes are also read as addresses.
//!
//! Properties: no panic; a path the check passes keeps all its segments in
//! the upstream URL (no dot segment resolved after the check), and a mirror
//! upstream stays under `/v2`; a `CONNECT` target reads back as itself; a
//! range lies within the body; an IPv4 address is public exactly when its
//! IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms are; an address range
//! reads back as itself and contains its network address.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dfdaemon::config::ProxyConfig;
use dfdaemon::proxy::destination::{AllowEntry, Cidr, DestinationGuard, normalize_host, parse_entry};
use dfdaemon::proxy::ip_class::classify;
use dfdaemon::proxy::path::check_path;
use dfdaemon::proxy::range::{self, RangeAsk};
use dfdaemon::proxy::target::{connect_target, forward_url, mirror_url};
use http::Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    addresses(data);
    let Some(lines) = darter_fuzz::lines(data, 4) else { return };
    let target = lines[0];
    let header = lines.get(1).copied().filter(|h| !h.is_empty());
    let entries: Vec<String> = lines.get(3).map(|rest| rest.lines().map(str::to_owned).collect()).unwrap_or_default();

    let open = ProxyConfig::default();
    let strict = ProxyConfig { allowed_hosts: entries.clone(), ..ProxyConfig::default() };
    if let Ok(uri) = target.parse::<Uri>() {
        for config in [&open, &strict] {
            request(&uri, header, config);
        }
    }
    let len = data.iter().take(8).fold(0u64, |n, b| n << 8 | u64::from(*b));
    if let RangeAsk::Part { start, end } = range::parse(lines.get(2).copied(), len) {
        assert!(start < end && end <= len, "{:?} of {len}: {start}..{end}", lines.get(2));
    }

    let mut all_ok = true;
    for entry in &entries {
        let host = normalize_host(entry);
        assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host:?} is lowercase");
        match parse_entry(entry) {
            Ok(AllowEntry::Network(cidr)) => {
                let back = Cidr::parse(&cidr.to_string()).expect("a range reads back");
                assert_eq!(back, cidr);
                if let Some(net) = cidr.to_string().split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) {
                    assert!(cidr.contains(net), "{cidr} contains its network address");
                }
            }
            Ok(AllowEntry::Named { .. }) => {}
            Err(_) => all_ok = false,
        }
    }
    assert_eq!(DestinationGuard::new(&entries).is_ok(), all_ok);
});

/// The request as the proxy routes it: the path check first, then the upstream.
fn request(uri: &Uri, header: Option<&str>, config: &ProxyConfig) {
    let _ = connect_target(uri, config).map(|t| {
        let again: Uri = t.to_string().parse().expect("a CONNECT target is an authority");
        assert_eq!(connect_target(&again, config).as_ref(), Ok(&t), "{uri} -> {t}");
        // The MITM path builds `https://{target}{path}` from the inner request.
        if check_path(uri.path()).is_ok()
            && let Ok(url) = url::Url::parse(&format!("https://{t}{}", path_and_query(uri)))
        {
            assert_eq!(url.port_or_known_default(), Some(t.port), "{t} {uri}");
            assert_eq!(segments(url.path()), segments(uri.path()), "{t} {uri} -> {url}");
        }
    });
    if check_path(uri.path()).is_err() {
        return;
    }
    if uri.scheme().is_some() {
        if let Ok(url) = forward_url(uri, config) {
            assert_eq!(segments(url.path()), segments(uri.path()), "{uri} -> {url}");
        }
    } else {
        if let Ok(url) = mirror_url(uri, header, None, config) {
            assert!(url.path().starts_with("/v2"), "{uri} -> {url}");
            assert_eq!(segments(url.path()), segments(uri.path()), "{uri} -> {url}");
        }
        // A registry listener's requests never leave for another host.
        if let Ok(url) = mirror_url(uri, header, Some("ghcr.io"), config) {
            assert_eq!(url.host_str(), Some("ghcr.io"), "{uri} -> {url}");
            assert_eq!(segments(url.path()), segments(uri.path()), "{uri} -> {url}");
        }
    }
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// A path's segments (an empty path is `/`).
fn segments(path: &str) -> usize {
    if path.is_empty() { 1 } else { path.split('/').count() - 1 }
}

fn addresses(data: &[u8]) {
    if let Some(b) = data.get(..16) {
        let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
        let _ = classify(IpAddr::V6(v6)).describe();
    }
    let Some(b) = data.get(..4) else { return };
    let v4 = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let class = classify(IpAddr::V4(v4));
    assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), class, "{v4} mapped");
    let [x, y, z, w] = v4.octets();
    let (hi, lo) = (u16::from_be_bytes([x, y]), u16::from_be_bytes([z, w]));
    for v6 in [
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo),         // IPv4-compatible
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo), // NAT64
        Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),    // 6to4
    ] {
        assert_eq!(classify(IpAddr::V6(v6)).is_public(), class.is_public(), "{v4} as {v6}");
    }
}
