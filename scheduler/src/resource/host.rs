//! Hosts: the dfdaemons (normal or seed) that announced themselves.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use darter_proto::common::v1 as pb;

use crate::error::Error;

/// Longest host ID accepted.
pub const MAX_ID_LEN: usize = 255;
/// Longest free-text field (hostname, IDC, location, version) accepted.
pub const MAX_TEXT_LEN: usize = 1024;

/// Normal peer or seed peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostType {
    /// Fetches from the origin only when told to.
    Normal,
    /// The cluster's first fetcher from the origin.
    Seed,
}

/// A validated host announcement.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Host ID.
    pub id: String,
    /// IP other peers reach it on.
    pub ip: IpAddr,
    /// Upload gRPC port.
    pub port: u16,
    /// Piece data port.
    pub download_port: u16,
    /// Normal or seed.
    pub kind: HostType,
    /// IDC (may be empty).
    pub idc: String,
    /// Location `a|b|c` (may be empty).
    pub location: String,
    /// Concurrent uploads it offers.
    pub upload_slots: u32,
    /// Uploads in progress when it announced.
    pub uploads_active: u32,
    /// The announcement as received (handed to children as the parent's address).
    pub proto: pb::Host,
}

impl TryFrom<pb::Host> for HostInfo {
    type Error = Error;

    fn try_from(h: pb::Host) -> Result<Self, Error> {
        let bad = |m: String| Error::InvalidArgument(m);
        if h.id.is_empty() {
            return Err(bad("host.id must not be empty".into()));
        }
        if h.id.len() > MAX_ID_LEN {
            return Err(bad(format!("host.id is longer than {MAX_ID_LEN} bytes")));
        }
        for (field, value) in
            [("hostname", &h.hostname), ("idc", &h.idc), ("location", &h.location), ("version", &h.version)]
        {
            if value.len() > MAX_TEXT_LEN {
                return Err(bad(format!("host.{field} is longer than {MAX_TEXT_LEN} bytes")));
            }
        }
        if h.ip.is_empty() {
            return Err(bad("host.ip must not be empty".into()));
        }
        let ip: IpAddr = h.ip.parse().map_err(|_| bad(format!("host.ip {:?} is not an IP address", h.ip)))?;
        if ip.is_unspecified() {
            return Err(bad(format!("host.ip {ip} is not reachable by other peers")));
        }
        let port = |field: &str, v: u32| match u16::try_from(v) {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(bad(format!("host.{field} {v} is not a port (1-65535)"))),
        };
        let (upload_port, download_port) = (port("port", h.port)?, port("download_port", h.download_port)?);
        let kind = match pb::HostType::try_from(h.r#type) {
            Ok(pb::HostType::Seed) => HostType::Seed,
            Ok(pb::HostType::Normal | pb::HostType::Unspecified) => HostType::Normal,
            Err(_) => return Err(bad(format!("host.type {} is not a known host type", h.r#type))),
        };
        let network = h.network.unwrap_or_default();
        Ok(Self {
            id: h.id.clone(),
            ip,
            port: upload_port,
            download_port,
            kind,
            idc: h.idc.clone(),
            location: h.location.clone(),
            upload_slots: network.upload_slots,
            uploads_active: network.uploads_active,
            proto: h,
        })
    }
}

/// A host the scheduler knows.
#[derive(Debug, Clone)]
pub struct Host {
    /// What it announced last.
    pub info: HostInfo,
    /// When it announced last.
    pub last_announce: Instant,
    /// Pieces children got from it and verified.
    pub uploads_ok: u64,
    /// Pieces children failed to get from it (or got wrong).
    pub uploads_failed: u64,
    /// The member whose certificate announced it (`None` in plaintext
    /// mode): only it may announce, leave or register peers for this host.
    pub owner: Option<darter_common::tls::Identity>,
}

impl Host {
    /// A host first seen `now`.
    pub fn new(info: HostInfo, now: Instant) -> Self {
        Self { info, last_announce: now, uploads_ok: 0, uploads_failed: 0, owner: None }
    }

    /// Whether it is a seed peer.
    pub fn is_seed(&self) -> bool {
        self.info.kind == HostType::Seed
    }

    /// Address of its upload gRPC API.
    pub fn upload_addr(&self) -> SocketAddr {
        SocketAddr::new(self.info.ip, self.info.port)
    }

    /// Whether it announced with a seed peer's certificate (mutual TLS).
    pub fn certified_seed(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.role == darter_common::tls::Role::SeedPeer)
    }
}

/// The seeds to trigger, in the order tasks are hashed over: `listed`
/// (configured, then the manager's), then the upload addresses of the hosts
/// that announced with a seed peer's certificate and are not listed (yet),
/// sorted. A seed that joins counts from its first announcement, not from
/// the manager's next answer.
pub fn trigger_seeds(hosts: &HashMap<String, Host>, listed: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut announced: Vec<SocketAddr> = hosts
        .values()
        .filter(|h| h.is_seed() && h.certified_seed())
        .map(Host::upload_addr)
        .filter(|a| !listed.contains(a))
        .collect();
    announced.sort();
    announced.dedup();
    listed.iter().copied().chain(announced).collect()
}

/// The seed host announced with upload address `addr`, if any (the lowest
/// host ID when several claim it, so the answer is stable).
pub fn seed_at(hosts: &HashMap<String, Host>, addr: SocketAddr) -> Option<&Host> {
    hosts.values().filter(|h| h.is_seed() && h.upload_addr() == addr).min_by(|a, b| a.info.id.cmp(&b.info.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> pb::Host {
        pb::Host {
            id: "h1".into(),
            ip: "10.0.0.1".into(),
            port: 4000,
            download_port: 4003,
            r#type: pb::HostType::Seed as i32,
            ..Default::default()
        }
    }

    #[test]
    fn valid_announcements_convert() {
        let info = HostInfo::try_from(host()).unwrap();
        assert_eq!(info.kind, HostType::Seed);
        assert_eq!(Host::new(info, Instant::now()).upload_addr(), "10.0.0.1:4000".parse().unwrap());
        let normal = HostInfo::try_from(pb::Host { r#type: 0, ..host() }).unwrap();
        assert_eq!(normal.kind, HostType::Normal);
    }

    #[test]
    fn bad_announcements_name_the_field() {
        let cases = [
            (pb::Host { id: String::new(), ..host() }, "host.id"),
            (pb::Host { id: "x".repeat(300), ..host() }, "host.id"),
            (pb::Host { ip: String::new(), ..host() }, "host.ip"),
            (pb::Host { ip: "nope".into(), ..host() }, "host.ip"),
            (pb::Host { ip: "0.0.0.0".into(), ..host() }, "host.ip"),
            (pb::Host { port: 0, ..host() }, "host.port"),
            (pb::Host { port: 70000, ..host() }, "host.port"),
            (pb::Host { download_port: 0, ..host() }, "host.download_port"),
            (pb::Host { r#type: 9, ..host() }, "host.type"),
            (pb::Host { location: "x".repeat(2000), ..host() }, "host.location"),
        ];
        for (h, field) in cases {
            let e = HostInfo::try_from(h).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
