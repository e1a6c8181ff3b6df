//! This host's facts as announced to the schedulers (and, for a seed peer,
//! registered with the manager).

use std::net::SocketAddr;

use darter_proto::common::v1 as pb;

use crate::config::Config;

/// The host as other peers and the scheduler see it. The ID includes the
/// upload port so several daemons on one machine (tests, sandboxes) stay apart.
pub fn facts(config: &Config, upload: SocketAddr, pieces: SocketAddr) -> pb::Host {
    let hostname = config.host.hostname.clone().unwrap_or_else(darter_common::host::os_hostname);
    let ip = config.host.ip.unwrap_or_else(|| darter_common::host::advertised_ip(upload.ip())).to_string();
    let kind = if config.host.seed { pb::HostType::Seed } else { pb::HostType::Normal };
    pb::Host {
        id: format!("{hostname}-{ip}-{}", upload.port()),
        hostname,
        ip,
        port: upload.port() as u32,
        download_port: pieces.port() as u32,
        r#type: kind as i32,
        idc: config.host.idc.clone(),
        location: config.host.location.clone(),
        network: Some(pb::Network { upload_slots: config.upload.slots as u32, ..Default::default() }),
        version: env!("CARGO_PKG_VERSION").to_string(),
        encrypted_pieces: config.upload.encrypt,
        ..Default::default()
    }
}
