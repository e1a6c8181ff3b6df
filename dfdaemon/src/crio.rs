//! Switching CRI-O (and every containers/image client: Podman, Buildah,
//! Skopeo) to the mirror: `dfdaemon containerd-config --crio <file>` writes
//! a `registries.conf` drop-in (`/etc/containers/registries.conf.d/`) with
//! one `[[registry]]` per registry and dfdaemon as its first
//! `[[registry.mirror]]`. containers/image tries the mirror first and falls
//! back to the registry itself when the mirror fails.
//!
//! containers/image sends a mirror neither containerd's `?ns=` nor custom
//! headers, and a path prefix in the mirror's location would change the
//! repository names it asks the registry's token service for. So each
//! registry needs a mirror port that means that registry: a
//! `proxy.registry_mirrors` entry, or `proxy.addr` itself for the registry
//! of `proxy.default_registry` ([`mirror_for`]).
//!
//! The file is written and restored like containerd's `hosts.toml`
//! ([`crate::containerd::write_file`], [`crate::containerd::restore_file`]).
//! CRI-O reads it on its next start or reload (`systemctl reload crio`,
//! SIGHUP, which restarts no container); Podman and Skopeo on their next run.

use std::net::SocketAddr;

use crate::config::ProxyConfig;
use crate::containerd::{HEADER, server};

/// One registry and where its mirror listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored<'a> {
    /// `host[:port]` as images name it.
    pub registry: &'a str,
    /// The registry itself is plain HTTP.
    pub insecure: bool,
    /// The mirror's `host:port`.
    pub mirror: String,
}

/// The mirror address of `registry` in `config`: its `proxy.registry_mirrors`
/// listener, else `proxy.addr` when `registry` is the default registry
/// (0.0.0.0 is dialled as 127.0.0.1). An error says what to add.
pub fn mirror_for(registry: &str, insecure: bool, config: &ProxyConfig) -> Result<String, String> {
    let same = |a: &str| server(a, insecure).eq_ignore_ascii_case(&server(registry, insecure));
    if let Some(m) = config.registry_mirrors.iter().find(|m| same(&m.registry)) {
        return dialled(m.addr);
    }
    if server(registry, insecure).eq_ignore_ascii_case(config.default_registry.trim_end_matches('/')) {
        return dialled(config.addr);
    }
    Err(format!(
        "CRI-O cannot tell a mirror which registry it wants, so {registry} needs a mirror port of its own: \
         add {{registry: {registry}, addr: 127.0.0.1:<port>}} to proxy.registry_mirrors \
         (proxy.addr serves only proxy.default_registry, {})",
        config.default_registry
    ))
}

fn dialled(mut addr: SocketAddr) -> Result<String, String> {
    if addr.port() == 0 {
        return Err(format!("{addr}: a mirror port of 0 is picked at start; CRI-O needs the port it will listen on"));
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr.to_string())
}

/// The `registries.conf` drop-in for `registries`.
pub fn render(registries: &[Mirrored<'_>]) -> String {
    let mut out = String::from(HEADER);
    out.push_str("# CRI-O reads it on start and on `systemctl reload crio`; Podman and Skopeo on each run.\n");
    for r in registries {
        out.push_str(&format!(
            "\n[[registry]]\nprefix = \"{0}\"\nlocation = \"{0}\"\ninsecure = {1}\n\n\
             [[registry.mirror]]\nlocation = \"{2}\"\ninsecure = true\n",
            r.registry, r.insecure, r.mirror
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegistryMirror;

    fn config() -> ProxyConfig {
        ProxyConfig {
            addr: ([0, 0, 0, 0], 4001).into(),
            registry_mirrors: vec![
                RegistryMirror { registry: "ghcr.io".into(), addr: ([127, 0, 0, 1], 4011).into() },
                RegistryMirror { registry: "10.0.0.1:5000".into(), addr: ([127, 0, 0, 1], 4012).into() },
            ],
            ..ProxyConfig::default()
        }
    }

    #[test]
    fn each_registry_gets_its_own_mirror_port() {
        let c = config();
        assert_eq!(mirror_for("ghcr.io", false, &c).unwrap(), "127.0.0.1:4011");
        assert_eq!(mirror_for("GHCR.io", false, &c).unwrap(), "127.0.0.1:4011");
        assert_eq!(mirror_for("10.0.0.1:5000", true, &c).unwrap(), "127.0.0.1:4012");
        // The default registry is proxy.addr's, under either of its names.
        assert_eq!(mirror_for("docker.io", false, &c).unwrap(), "127.0.0.1:4001");
        assert_eq!(mirror_for("index.docker.io", false, &c).unwrap(), "127.0.0.1:4001");
        let ephemeral = ProxyConfig {
            registry_mirrors: vec![RegistryMirror { registry: "quay.io".into(), addr: ([127, 0, 0, 1], 0).into() }],
            ..config()
        };
        assert!(mirror_for("quay.io", false, &ephemeral).unwrap_err().contains("port of 0"));
        let missing = mirror_for("quay.io", false, &c).unwrap_err();
        assert!(missing.contains("proxy.registry_mirrors") && missing.contains("quay.io"), "{missing}");
    }

    #[test]
    fn renders_a_mirror_in_front_of_each_registry() {
        let text = render(&[
            Mirrored { registry: "docker.io", insecure: false, mirror: "127.0.0.1:4001".into() },
            Mirrored { registry: "10.0.0.1:5000", insecure: true, mirror: "127.0.0.1:4012".into() },
        ]);
        assert!(text.starts_with(HEADER), "{text}");
        assert!(
            text.contains(
                "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\ninsecure = false\n\n\
                 [[registry.mirror]]\nlocation = \"127.0.0.1:4001\"\ninsecure = true\n"
            ),
            "{text}"
        );
        assert!(text.contains("prefix = \"10.0.0.1:5000\"\nlocation = \"10.0.0.1:5000\"\ninsecure = true\n"), "{text}");
    }
}
