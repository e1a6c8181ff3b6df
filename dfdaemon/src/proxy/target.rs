//! Where a proxied request goes, and whether it may: the upstream of a
//! registry-mirror request (containerd's `ns` query parameter, else the
//! `X-Darter-Registry` header, else the configured default), or the
//! absolute URL of a forward-proxy request; checked against the allowed hosts.

use http::Uri;
use url::Url;

use crate::config::ProxyConfig;

/// Header naming the upstream registry (`https://registry.example.com`) of a
/// mirror request, for clients that do not send `ns`.
pub const REGISTRY_HEADER: &str = "x-darter-registry";

/// Why a request cannot be proxied (answered as a [`super::refusal::Refusal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Malformed (400).
    #[error("{0}")]
    Bad(String),
    /// The upstream host is not in `proxy.allowed_hosts` (403).
    #[error("{0} is not an allowed upstream (proxy.allowed_hosts)")]
    NotAllowed(String),
}

/// How a request reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// containerd's `hosts.toml` mirror: origin-form `/v2/...`.
    Mirror,
    /// `HTTP_PROXY`: absolute-form `http://host/...`.
    Forward,
}

/// The upstream URL of a mirror request (origin-form `/v2/...`), without the
/// `ns` parameter. On a listener of `proxy.registry_mirrors`, `listener` is
/// its registry: the request is for it, whatever header it carries, and an
/// `ns` naming another registry is refused.
pub fn mirror_url(
    uri: &Uri,
    registry_header: Option<&str>,
    listener: Option<&str>,
    config: &ProxyConfig,
) -> Result<Url, TargetError> {
    let path = uri.path();
    if !path.starts_with("/v2") {
        return Err(TargetError::Bad(format!(
            "{path} is neither a registry API path (/v2/...) nor an absolute-form proxy request"
        )));
    }
    let mut ns = None;
    let mut rest = Vec::new();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if k == "ns" {
            ns = Some(v.into_owned());
        } else {
            rest.push((k.into_owned(), v.into_owned()));
        }
    }
    if let Some(registry) = listener {
        if let Some(asked) = &ns
            && registry_host(asked)? != registry_host(registry)?
        {
            return Err(TargetError::Bad(format!(
                "this port mirrors {registry} only (proxy.registry_mirrors), not ns={asked}"
            )));
        }
        ns = Some(registry.to_owned());
    }
    let registry_header = registry_header.filter(|_| listener.is_none());
    let base = match (ns, registry_header) {
        (Some(ns), _) => {
            let host = registry_host(&ns)?;
            let scheme =
                if config.insecure_registries.iter().any(|h| h.eq_ignore_ascii_case(&host)) { "http" } else { "https" };
            format!("{scheme}://{host}")
        }
        (None, Some(header)) => {
            let url = Url::parse(header.trim())
                .map_err(|e| TargetError::Bad(format!("{REGISTRY_HEADER} {header:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(TargetError::Bad(format!("{REGISTRY_HEADER} {header:?}: expected http(s)://host[:port]")));
            }
            format!("{}://{}", url.scheme(), authority(&url))
        }
        (None, None) => config.default_registry.trim_end_matches('/').to_owned(),
    };
    let mut url = Url::parse(&format!("{base}{path}")).map_err(|e| TargetError::Bad(format!("upstream: {e}")))?;
    if !rest.is_empty() {
        url.query_pairs_mut().extend_pairs(rest);
    }
    check_allowed(&url, config)?;
    Ok(url)
}

/// The URL of a forward-proxy request (absolute-form).
pub fn forward_url(uri: &Uri, config: &ProxyConfig) -> Result<Url, TargetError> {
    let url = Url::parse(&uri.to_string()).map_err(|e| TargetError::Bad(format!("{uri}: {e}")))?;
    if url.scheme() != "http" {
        return Err(TargetError::Bad(format!(
            "{} URLs are proxied with CONNECT, not as absolute-form requests",
            url.scheme()
        )));
    }
    if url.host_str().is_none() {
        return Err(TargetError::Bad(format!("{uri}: no host")));
    }
    check_allowed(&url, config)?;
    Ok(url)
}

/// The target of a `CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    /// The host as sent, an IPv6 literal without its brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for ConnectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The `host:port` of a `CONNECT`, checked against the allowed hosts.
pub fn connect_target(uri: &Uri, config: &ProxyConfig) -> Result<ConnectTarget, TargetError> {
    let authority = uri.authority().ok_or_else(|| TargetError::Bad("CONNECT needs host:port".into()))?;
    let port = authority.port_u16().ok_or_else(|| TargetError::Bad("CONNECT needs host:port".into()))?;
    let host = connect_host(authority.host())?;
    if !allowed(host, Some(port), config) {
        return Err(TargetError::NotAllowed(authority.to_string()));
    }
    Ok(ConnectTarget { host: host.to_owned(), port })
}

/// The host of a `CONNECT` authority: a name or IPv4 address, or an IPv6
/// literal in brackets (returned without them). `http` takes brackets
/// anywhere in a host (`a[b`), so the shape is checked here.
fn connect_host(raw: &str) -> Result<&str, TargetError> {
    let bad = || TargetError::Bad(format!("CONNECT needs host:port; {raw:?} is not a host name or IP address"));
    if let Some(inner) = raw.strip_prefix('[') {
        let v6 = inner.strip_suffix(']').ok_or_else(bad)?;
        return v6.parse::<std::net::Ipv6Addr>().map(|_| v6).map_err(|_| bad());
    }
    let name_like = raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if raw.is_empty() || !name_like {
        return Err(bad());
    }
    Ok(raw)
}

/// containerd's `ns` value as the registry's API host: `docker.io` is served
/// by `registry-1.docker.io`.
fn registry_host(ns: &str) -> Result<String, TargetError> {
    let ns = ns.trim();
    let valid = !ns.is_empty()
        && ns.len() <= 255
        && ns.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid || Url::parse(&format!("https://{ns}/")).map_or(true, |u| u.host_str().is_none()) {
        return Err(TargetError::Bad(format!("ns {ns:?} is not a registry host")));
    }
    let ns = ns.to_ascii_lowercase();
    Ok(match ns.as_str() {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".to_owned(),
        _ => ns,
    })
}

fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

fn check_allowed(url: &Url, config: &ProxyConfig) -> Result<(), TargetError> {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    if allowed(host, url.port_or_known_default(), config) {
        Ok(())
    } else {
        Err(TargetError::NotAllowed(authority(url)))
    }
}

/// Whether `host` (and `port`) match `proxy.allowed_hosts`: empty allows every
/// host; an entry is `host`, `host:port` or `*.domain`.
fn allowed(host: &str, port: Option<u16>, config: &ProxyConfig) -> bool {
    if config.allowed_hosts.is_empty() {
        return true;
    }
    let host = host.to_ascii_lowercase();
    config.allowed_hosts.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let (pattern, want_port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h.to_owned(), p.parse::<u16>().ok()),
            _ => (entry.clone(), None),
        };
        let pattern = pattern.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == pattern,
        };
        host_ok && want_port.is_none_or(|p| Some(p) == port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProxyConfig {
        ProxyConfig {
            insecure_registries: vec!["127.0.0.1:5000".into()],
            default_registry: "https://registry.example.com".into(),
            ..ProxyConfig::default()
        }
    }

    fn mirror(uri: &str, header: Option<&str>, c: &ProxyConfig) -> Result<String, TargetError> {
        mirror_url(&uri.parse().unwrap(), header, None, c).map(|u| u.to_string())
    }

    #[test]
    fn a_registry_listener_mirrors_its_registry_only() {
        let c = config();
        let on = |uri: &str, header: Option<&str>, registry: &str| {
            mirror_url(&uri.parse().unwrap(), header, Some(registry), &c).map(|u| u.to_string())
        };
        let blob = "/v2/library/alpine/blobs/sha256:ab";
        assert_eq!(on(blob, None, "docker.io").unwrap(), format!("https://registry-1.docker.io{blob}"));
        assert_eq!(on("/v2/x/manifests/1", None, "127.0.0.1:5000").unwrap(), "http://127.0.0.1:5000/v2/x/manifests/1");
        // A header cannot send the request elsewhere; a matching ns is fine.
        assert_eq!(on("/v2/", Some("https://evil.example"), "ghcr.io").unwrap(), "https://ghcr.io/v2/");
        assert_eq!(on("/v2/?ns=index.docker.io", None, "docker.io").unwrap(), "https://registry-1.docker.io/v2/");
        let other = on("/v2/?ns=quay.io", None, "ghcr.io").unwrap_err();
        assert!(other.to_string().contains("mirrors ghcr.io only"), "{other}");
        let strict = ProxyConfig { allowed_hosts: vec!["ghcr.io".into()], ..config() };
        let refused = mirror_url(&"/v2/".parse().unwrap(), None, Some("quay.io"), &strict);
        assert!(matches!(refused, Err(TargetError::NotAllowed(_))));
    }

    #[test]
    fn mirror_upstream_from_ns_header_or_default() {
        let c = config();
        assert_eq!(
            mirror("/v2/library/alpine/blobs/sha256:ab?ns=docker.io", None, &c).unwrap(),
            "https://registry-1.docker.io/v2/library/alpine/blobs/sha256:ab"
        );
        assert_eq!(
            mirror("/v2/x/manifests/1?ns=127.0.0.1:5000", None, &c).unwrap(),
            "http://127.0.0.1:5000/v2/x/manifests/1"
        );
        assert_eq!(
            mirror("/v2/x/tags/list?n=10&ns=ghcr.io", Some("https://ignored.example"), &c).unwrap(),
            "https://ghcr.io/v2/x/tags/list?n=10"
        );
        assert_eq!(mirror("/v2/", Some("http://10.0.0.1:5000/"), &c).unwrap(), "http://10.0.0.1:5000/v2/");
        assert_eq!(mirror("/v2/", None, &c).unwrap(), "https://registry.example.com/v2/");
    }

    #[test]
    fn mirror_refuses_bad_input() {
        let c = config();
        assert!(matches!(mirror("/v2/?ns=bad%20host", None, &c), Err(TargetError::Bad(_))));
        assert!(matches!(mirror("/v2/?ns=", None, &c), Err(TargetError::Bad(_))));
        assert!(matches!(mirror("/v2/", Some("ftp://x"), &c), Err(TargetError::Bad(_))));
        assert!(matches!(mirror("/etc/passwd", None, &c), Err(TargetError::Bad(_))));
        let strict = ProxyConfig { allowed_hosts: vec!["*.example.com".into(), "127.0.0.1:5000".into()], ..config() };
        assert!(mirror("/v2/?ns=docker.io", None, &strict).is_err());
        assert!(mirror("/v2/?ns=127.0.0.1:5000", None, &strict).is_ok());
        assert!(matches!(mirror("/v2/?ns=127.0.0.1:5001", None, &strict), Err(TargetError::NotAllowed(_))));
        assert!(mirror("/v2/", None, &strict).is_ok(), "registry.example.com matches *.example.com");
    }

    #[test]
    fn forward_and_connect_targets() {
        let c = config();
        assert_eq!(forward_url(&"http://h:8080/f?x=1".parse().unwrap(), &c).unwrap().as_str(), "http://h:8080/f?x=1");
        assert!(forward_url(&"https://h/f".parse().unwrap(), &c).is_err());
        assert_eq!(connect_target(&"h:443".parse().unwrap(), &c).unwrap().to_string(), "h:443");
        let v6 = connect_target(&"[::1]:443".parse().unwrap(), &c).unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.to_string().as_str()), ("::1", 443, "[::1]:443"));
        assert!(connect_target(&"h".parse().unwrap(), &c).is_err());
        // Found by the proxy_target fuzz target: `http` reads `a[fd00::1]` as
        // one host, which became `a[fd00::1` and printed as `[a[fd00::1]:5000`.
        for bad in ["a[fd00::1]:5000", "[::1:443", "[h]:443", "h%41:443"] {
            let Ok(uri) = bad.parse::<Uri>() else { continue };
            assert!(matches!(connect_target(&uri, &c), Err(TargetError::Bad(_))), "{bad}");
        }
        assert!(matches!(connect_target(&"a[fd00::1]:5000".parse().unwrap(), &c), Err(TargetError::Bad(_))));
        assert_eq!(connect_target(&"[fd00::1]:5000".parse().unwrap(), &c).unwrap().host, "fd00::1");
        assert_eq!(connect_target(&"10.0.0.1:443".parse().unwrap(), &c).unwrap().host, "10.0.0.1");
        let strict = ProxyConfig { allowed_hosts: vec!["h:443".into()], ..config() };
        assert!(connect_target(&"h:443".parse().unwrap(), &strict).is_ok());
        assert!(matches!(connect_target(&"h:22".parse().unwrap(), &strict), Err(TargetError::NotAllowed(_))));
    }
}
