//! The destination guard: the proxy is not an open relay into the network it
//! runs in. A destination whose address is loopback, private, link-local,
//! cloud metadata or otherwise internal ([`ip_class`](super::ip_class)) is
//! refused unless `proxy.allowed_destinations` lists it; public destinations
//! (registries, their blob storage) need nothing.
//!
//! A host name is resolved once and refused if ANY of its addresses is
//! internal; what is dialled is exactly the addresses that were checked, so a
//! name that answers a public address to the check and a loopback one to the
//! dial (DNS rebinding) does not get through:
//! - `CONNECT` dials the addresses [`DestinationGuard::resolve`] returned;
//! - HTTP requests go through a client whose DNS resolver is
//!   [`GuardedResolver`], which checks what it returns; an IP literal, which no
//!   resolver sees, is checked before the request ([`DestinationGuard::check_hop`],
//!   also for every redirect the back-to-source of a proxied blob follows).
//!
//! Allow-list entries take two shapes:
//! - an address or range (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`): any
//!   destination whose addresses fall in it, on any port, however it is named;
//! - a destination as clients name it, `host`, `host:port`, `*.domain[:port]`,
//!   `IP:port`, `[v6]:port`: that name (on that port) is trusted wherever it
//!   resolves. A name on a port its entry does not give is checked like any
//!   other name.
//!
//! The parsing and matching functions are pure and public for fuzzing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::ip_class::{AddrClass, classify};

/// The config field that lists exceptions.
pub const FIELD: &str = "proxy.allowed_destinations";

/// Time to resolve a host name.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// An address range, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// One address.
    pub fn single(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        Self { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }

    /// Parses `10.0.0.0/8` or `fd00::/8`; bits past the prefix must be zero.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("prefix {prefix:?} is not 0..={max}"))?;
        let cidr = Self { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(format!("{s} has bits set past the prefix; did you mean {network}/{prefix}?"));
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        }
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counting as its IPv4 one) is in it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The host part of a named entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// An IP literal, as a client would write it in a URL.
    Ip(IpAddr),
    /// One host name (lowercase, no trailing dot).
    Name(String),
    /// `*.domain`: every name under `domain`, not `domain` itself.
    Subdomains(String),
}

impl HostPattern {
    /// Whether a host as a client named it (see [`normalize_host`]) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h.to_canonical() == ip.to_canonical()),
            Self::Name(name) => host == name,
            Self::Subdomains(domain) => {
                host.len() > domain.len() + 1 && host.ends_with(domain.as_str()) && {
                    let dot = host.len() - domain.len() - 1;
                    host.as_bytes()[dot] == b'.'
                }
            }
        }
    }
}

/// One `proxy.allowed_destinations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// Addresses, on any port, however named.
    Network(Cidr),
    /// A destination as named: the host (pattern) and, if given, the port.
    Named {
        /// The host.
        host: HostPattern,
        /// The port; `None`: any.
        port: Option<u16>,
    },
}

/// Parses an entry: `CIDR`, `IP`, `IP:port`, `[v6]:port`, `host`,
/// `host:port`, `*.domain`, `*.domain:port`.
pub fn parse_entry(s: &str) -> Result<AllowEntry, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty entry".into());
    }
    if s.contains('/') {
        return Cidr::parse(s).map(AllowEntry::Network);
    }
    let unbracketed = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(AllowEntry::Network(Cidr::single(ip)));
    }
    let (host, port) = split_host_port(s)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(AllowEntry::Named { host: HostPattern::Ip(ip), port });
    }
    let lower = normalize_host(host);
    let pattern = match lower.strip_prefix("*.") {
        Some(domain) => HostPattern::Subdomains(valid_name(domain, s)?.to_owned()),
        None => HostPattern::Name(valid_name(&lower, s)?.to_owned()),
    };
    Ok(AllowEntry::Named { host: pattern, port })
}

/// `host[:port]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("{s:?}: unclosed ["))?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(|| format!("{s:?}: expected [v6]:port"))?)),
        }
    } else {
        match s.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!("{s:?} is not host[:port] (write IPv6 as [v6]:port)"));
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("{p:?} is not a port (1-65535)"))?)
        }
    };
    Ok((host, port))
}

fn valid_name<'a>(name: &'a str, entry: &str) -> Result<&'a str, String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok { Ok(name) } else { Err(format!("{entry:?} is not a CIDR, an IP, host[:port] or *.domain[:port]")) }
}

/// A host as matched against entries: lowercase, without brackets or a
/// trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Why a destination cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// It is (or its name resolves to) an internal address not allow-listed.
    #[error(
        "{}; the proxy reaches loopback, private, link-local and metadata destinations only when {FIELD} lists them",
        what_it_is(destination, *addr, *class, *named)
    )]
    Refused {
        /// The destination as named (`host:port`).
        destination: String,
        /// The internal address.
        addr: IpAddr,
        /// Its class.
        class: AddrClass,
        /// Whether a name resolved to it (else the client gave the address).
        named: bool,
    },
    /// The name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Unresolved {
        /// The name.
        host: String,
        /// Why.
        reason: String,
    },
}

fn what_it_is(destination: &str, addr: IpAddr, class: AddrClass, named: bool) -> String {
    if named {
        format!("{destination} resolves to {addr}, {}", class.describe())
    } else {
        format!("{destination} is {}", class.describe())
    }
}

/// The guard over `proxy.allowed_destinations`.
#[derive(Debug, Clone, Default)]
pub struct DestinationGuard {
    networks: Vec<Cidr>,
    named: Vec<(HostPattern, Option<u16>)>,
}

impl DestinationGuard {
    /// The guard for these entries; an error names the first bad entry's index.
    pub fn new(entries: &[String]) -> Result<Self, (usize, String)> {
        let mut guard = Self::default();
        for (i, entry) in entries.iter().enumerate() {
            match parse_entry(entry).map_err(|e| (i, e))? {
                AllowEntry::Network(net) => guard.networks.push(net),
                AllowEntry::Named { host, port } => guard.named.push((host, port)),
            }
        }
        Ok(guard)
    }

    /// Whether a named entry lists `host` (normalized) on `port`; `None`: on any port.
    pub fn allows_name(&self, host: &str, port: Option<u16>) -> bool {
        self.named.iter().any(|(pattern, want)| {
            pattern.matches(host)
                && match (want, port) {
                    (Some(w), Some(p)) => *w == p,
                    _ => true,
                }
        })
    }

    /// Whether `ip` may be dialled: public, or in a listed range; else its class.
    pub fn allows_addr(&self, ip: IpAddr) -> Result<(), AddrClass> {
        let class = classify(ip);
        if class.is_public() || self.networks.iter().any(|n| n.contains(ip)) { Ok(()) } else { Err(class) }
    }

    /// Resolves `host` (a name or an IP literal) on `port` and checks it: the
    /// addresses to dial, all of them allowed.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
        let normal = normalize_host(host);
        let trusted = self.allows_name(&normal, Some(port));
        let destination = display(&normal, Some(port));
        if let Ok(ip) = normal.parse::<IpAddr>() {
            if !trusted {
                self.allows_addr(ip).map_err(|class| GuardError::Refused {
                    destination,
                    addr: ip,
                    class,
                    named: false,
                })?;
            }
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs = lookup(unbracket(host), port).await?;
        if !trusted {
            self.check_all(&destination, &addrs)?;
        }
        Ok(addrs)
    }

    /// Checks one request URL that a client with [`GuardedResolver`] will
    /// dial: an IP literal here (no resolver sees it), a name listed for
    /// another port too (the resolver trusts the name on any port), any other
    /// name by the resolver at dial time.
    pub async fn check_hop(&self, url: &url::Url) -> Result<(), GuardError> {
        let host = normalize_host(url.host_str().unwrap_or_default());
        let port = url.port_or_known_default().unwrap_or(0);
        let literal = host.parse::<IpAddr>().is_ok();
        if literal || (!self.allows_name(&host, Some(port)) && self.allows_name(&host, None)) {
            self.resolve(&host, port).await?;
        }
        Ok(())
    }

    fn check_all(&self, destination: &str, addrs: &[SocketAddr]) -> Result<(), GuardError> {
        for a in addrs {
            self.allows_addr(a.ip()).map_err(|class| GuardError::Refused {
                destination: destination.to_owned(),
                addr: a.ip(),
                class,
                named: true,
            })?;
        }
        Ok(())
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

fn display(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Every address `host` resolves to (with `port`).
async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
    let unresolved = |reason: String| GuardError::Unresolved { host: host.to_owned(), reason };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolved(format!("no answer in {RESOLVE_TIMEOUT:?}")))?
        .map_err(|e| unresolved(e.to_string()))?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(unresolved("no address".into()));
    }
    Ok(addrs)
}

/// The [`GuardError`] somewhere in an error's source chain (a refusal by
/// [`GuardedResolver`] inside a client error).
pub fn find_guard_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a GuardError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<GuardError>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// A DNS resolver for HTTP clients that returns only addresses the guard
/// allows (all of a name's addresses, or an error).
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<DestinationGuard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let normal = normalize_host(&host);
            let addrs = lookup(&host, 0).await?;
            if !guard.allows_name(&normal, None) {
                guard.check_all(&display(&normal, None), &addrs)?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(entries: &[&str]) -> DestinationGuard {
        DestinationGuard::new(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn entries_parse_into_ranges_and_names() {
        let net = |s: &str| AllowEntry::Network(Cidr::parse(s).unwrap());
        let named = |host: HostPattern, port| AllowEntry::Named { host, port };
        assert_eq!(parse_entry("10.0.0.0/8").unwrap(), net("10.0.0.0/8"));
        assert_eq!(parse_entry("127.0.0.1").unwrap(), net("127.0.0.1/32"));
        assert_eq!(parse_entry("::1").unwrap(), net("::1/128"));
        assert_eq!(parse_entry("[::1]").unwrap(), net("::1/128"));
        assert_eq!(parse_entry("127.0.0.1:5000").unwrap(), named(HostPattern::Ip([127, 0, 0, 1].into()), Some(5000)));
        assert_eq!(parse_entry("[::1]:5000").unwrap(), named(HostPattern::Ip("::1".parse().unwrap()), Some(5000)));
        assert_eq!(parse_entry("Registry.Corp").unwrap(), named(HostPattern::Name("registry.corp".into()), None));
        assert_eq!(
            parse_entry("registry.corp.:443").unwrap(),
            named(HostPattern::Name("registry.corp".into()), Some(443))
        );
        assert_eq!(parse_entry("*.corp:5000").unwrap(), named(HostPattern::Subdomains("corp".into()), Some(5000)));
        for bad in [
            "",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/x",
            "host:0",
            "host:70000",
            "host:",
            "a b",
            "http://x",
            "::1:5000:x:y:z:w:v:u",
            "[::1",
            "[::1]5000",
            "*.",
            "x..y",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad:?} parsed as {:?}", parse_entry(bad));
        }
        assert_eq!(
            parse_entry("10.1.0.0/8").unwrap_err(),
            "10.1.0.0/8 has bits set past the prefix; did you mean 10.0.0.0/8?"
        );
    }

    #[test]
    fn ranges_contain_their_addresses() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()), "IPv4-mapped counts as IPv4");
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains("fc00::1".parse().unwrap()));
    }

    #[test]
    fn names_match_as_named() {
        let g = guard(&["registry.corp:5000", "*.internal", "127.0.0.1:8080"]);
        assert!(g.allows_name("registry.corp", Some(5000)));
        assert!(!g.allows_name("registry.corp", Some(22)));
        assert!(g.allows_name("registry.corp", None));
        assert!(g.allows_name("a.b.internal", Some(1)));
        assert!(!g.allows_name("internal", Some(1)));
        assert!(!g.allows_name("xinternal", Some(1)));
        assert!(g.allows_name("127.0.0.1", Some(8080)));
        assert!(!g.allows_name("localhost", Some(8080)), "a name resolving to a listed IP:port is not that IP:port");
    }

    #[tokio::test]
    async fn literals_are_checked_without_dns() {
        let none = guard(&[]);
        let err = none.resolve("127.0.0.1", 80).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "127.0.0.1:80 is a loopback address; the proxy reaches loopback, private, link-local and metadata \
             destinations only when proxy.allowed_destinations lists them"
        );
        assert!(matches!(
            none.resolve("[::ffff:169.254.169.254]", 80).await,
            Err(GuardError::Refused { class: AddrClass::Metadata, .. })
        ));
        assert_eq!(none.resolve("8.8.8.8", 443).await.unwrap(), vec!["8.8.8.8:443".parse().unwrap()]);
        let some = guard(&["127.0.0.1:5000", "10.0.0.0/8"]);
        assert!(some.resolve("127.0.0.1", 5000).await.is_ok());
        assert!(some.resolve("127.0.0.1", 5001).await.is_err());
        assert!(some.resolve("10.9.8.7", 22).await.is_ok());
    }

    #[tokio::test]
    async fn a_name_is_judged_by_every_address_it_resolves_to() {
        let err = guard(&[]).resolve("localhost", 4001).await.unwrap_err();
        assert!(matches!(&err, GuardError::Refused { class: AddrClass::Loopback, named: true, .. }), "{err:?}");
        assert!(err.to_string().starts_with("localhost:4001 resolves to "), "{err}");
        assert!(guard(&["localhost:4001"]).resolve("localhost", 4001).await.is_ok());
        assert!(guard(&["localhost:4001"]).resolve("localhost", 22).await.is_err());
        assert!(guard(&["127.0.0.0/8", "::1"]).resolve("localhost", 22).await.is_ok());
        let url = |s: &str| url::Url::parse(s).unwrap();
        let g = guard(&["localhost:4001"]);
        assert!(g.check_hop(&url("http://localhost:4001/")).await.is_ok());
        assert!(g.check_hop(&url("http://localhost:22/")).await.is_err(), "listed for another port: checked here");
        assert!(g.check_hop(&url("http://127.0.0.1/")).await.is_err());
        assert!(g.check_hop(&url("http://[::1]:4001/")).await.is_err());
    }

    #[tokio::test]
    async fn a_client_with_the_resolver_is_refused_and_says_why() {
        darter_common::install_crypto_provider();
        let client =
            reqwest::Client::builder().no_proxy().dns_resolver(GuardedResolver(Arc::new(guard(&[])))).build().unwrap();
        // Nothing listens there: only the resolver's refusal can answer.
        let err = client.get("http://localhost:9/").send().await.unwrap_err();
        let found = find_guard_error(&err);
        assert!(matches!(found, Some(GuardError::Refused { class: AddrClass::Loopback, named: true, .. })), "{err:?}");
        assert_eq!(find_guard_error(&std::io::Error::other("plain")), None);
    }
}
