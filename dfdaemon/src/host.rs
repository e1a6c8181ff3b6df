//! This host's facts as announced to the schedulers.

use std::net::SocketAddr;

use darter_proto::common::v1 as pb;

use crate::config::Config;

/// The OS host name (or `localhost` when it cannot be read).
fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The host as other peers and the scheduler see it. The ID includes the
/// upload port so several daemons on one machine (tests, sandboxes) stay apart.
pub fn facts(config: &Config, upload: SocketAddr, pieces: SocketAddr) -> pb::Host {
    let hostname = config.host.hostname.clone().unwrap_or_else(os_hostname);
    let ip = config.host.ip.clone().unwrap_or_else(|| {
        if upload.ip().is_unspecified() { "127.0.0.1".to_string() } else { upload.ip().to_string() }
    });
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
        ..Default::default()
    }
}
