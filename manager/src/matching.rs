//! Matching a peer to a cluster (ARCHITECTURE.md §5).
//!
//! [`match_cluster`] is a pure, deterministic function: given what a peer says
//! about itself ([`PeerFacts`]) and the stored clusters, each marked with whether
//! it has an active scheduler ([`ClusterCandidate`]), it returns the cluster the
//! peer belongs to and *why* ([`Match::rule`], [`Match::detail`]), so the API and
//! console can answer "which cluster would this host get?".
//!
//! Rules, in order; the first that yields a cluster wins. Only clusters with at
//! least one active scheduler are eligible, for every rule — an ineligible
//! cluster is treated as if it did not exist, so a better-matching but inactive
//! cluster never hides a worse-matching active one or a later rule.
//!
//! 1. [`MatchRule::ClusterId`]: the cluster ID from the peer's own config, if
//!    that cluster is eligible (an unknown or inactive ID falls through).
//! 2. [`MatchRule::Cidr`]: the cluster with a CIDR in `scopes.cidrs` containing
//!    the peer's IP, longest prefix first. IPv4-mapped IPv6 peer addresses
//!    (`::ffff:a.b.c.d`) are matched as the IPv4 address.
//! 3. [`MatchRule::Hostname`]: a cluster with a regex in `scopes.hostnames` that
//!    matches the peer's hostname. Patterns use Rust `regex` syntax (close to
//!    Go's RE2) and are searched **unanchored**, as Dragonfly does with Go's
//!    `regexp.MatchString`: `web` matches `a-web-1`; write `^web-\d+$` to anchor.
//! 4. [`MatchRule::Idc`]: `scopes.idc` lists one or several IDCs separated by
//!    `|`; the peer's IDC must equal one of them exactly (case-sensitive).
//! 5. [`MatchRule::Location`]: `country|province|city|...`; the cluster whose
//!    location shares the longest element-wise prefix with the peer's location
//!    (at least one element; comparison is case-sensitive).
//! 6. [`MatchRule::Default`]: the cluster flagged `is_default`.
//!
//! Ties within a rule go to the lowest cluster ID, whatever the input order.
//! Parts are trimmed of surrounding whitespace before comparing; an empty peer
//! fact (hostname, IDC, location) does not take part in its rule, and empty
//! patterns or scope parts never match. Invalid CIDRs or regexes found in a
//! stored cluster are skipped with a `warn!` log; [`validate_scopes`] is the
//! check to run before storing scopes so that does not happen.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::store::{Cluster, Scopes};

/// Compiled-program size limit for hostname regexes (the `regex` default is
/// 10 MiB; cluster scopes are short, so a pattern that big is a mistake).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What a peer tells the manager about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerFacts {
    pub hostname: String,
    pub ip: IpAddr,
    #[serde(default)]
    pub idc: String,
    /// `country|province|city|...`
    #[serde(default)]
    pub location: String,
    /// An explicit cluster ID from the peer's config.
    #[serde(default)]
    pub cluster_id: Option<i64>,
}

/// A stored cluster and whether it can take peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterCandidate {
    pub cluster: Cluster,
    /// At least one of the cluster's schedulers is active.
    pub has_active_scheduler: bool,
}

/// Which rule picked the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRule {
    ClusterId,
    Cidr,
    Hostname,
    Idc,
    Location,
    Default,
}

impl MatchRule {
    /// The rule's name as serialized (`cluster_id`, `cidr`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MatchRule::ClusterId => "cluster_id",
            MatchRule::Cidr => "cidr",
            MatchRule::Hostname => "hostname",
            MatchRule::Idc => "idc",
            MatchRule::Location => "location",
            MatchRule::Default => "default",
        }
    }
}

impl fmt::Display for MatchRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer: a cluster and the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub cluster_id: i64,
    pub rule: MatchRule,
    /// Human-readable explanation, e.g. `cidr 10.0.0.0/8`,
    /// `hostname regex ^web-`, `location cn|zj (2 elements)`.
    pub detail: String,
}

/// Picks the cluster for `peer` among `clusters`; `None` when no cluster with
/// an active scheduler matches any rule (including the default one).
pub fn match_cluster(peer: &PeerFacts, clusters: &[ClusterCandidate]) -> Option<Match> {
    let mut eligible: Vec<&Cluster> = clusters.iter().filter(|c| c.has_active_scheduler).map(|c| &c.cluster).collect();
    eligible.sort_by_key(|c| c.id);

    by_cluster_id(peer, &eligible)
        .or_else(|| by_cidr(peer, &eligible))
        .or_else(|| by_hostname(peer, &eligible))
        .or_else(|| by_idc(peer, &eligible))
        .or_else(|| by_location(peer, &eligible))
        .or_else(|| by_default(&eligible))
}

fn found(cluster_id: i64, rule: MatchRule, detail: String) -> Option<Match> {
    Some(Match { cluster_id, rule, detail })
}

fn by_cluster_id(peer: &PeerFacts, eligible: &[&Cluster]) -> Option<Match> {
    let id = peer.cluster_id?;
    let c = eligible.iter().find(|c| c.id == id)?;
    found(c.id, MatchRule::ClusterId, format!("cluster_id {id}"))
}

fn by_cidr(peer: &PeerFacts, eligible: &[&Cluster]) -> Option<Match> {
    let ip = peer.ip.to_canonical();
    // (prefix length, cluster id, net); `eligible` is sorted by id, so keeping
    // only strictly longer prefixes leaves ties with the lowest id.
    let mut best: Option<(u8, i64, IpNet)> = None;
    for c in eligible {
        for raw in &c.scopes.cidrs {
            let net = match parse_cidr(raw) {
                Ok(net) => net,
                Err(e) => {
                    tracing::warn!(cluster_id = c.id, cidr = %raw, error = %e, "skipping invalid CIDR in cluster scopes");
                    continue;
                }
            };
            if net.contains(&ip) && best.is_none_or(|(len, _, _)| net.prefix_len() > len) {
                best = Some((net.prefix_len(), c.id, net));
            }
        }
    }
    let (_, id, net) = best?;
    found(id, MatchRule::Cidr, format!("cidr {net}"))
}

fn by_hostname(peer: &PeerFacts, eligible: &[&Cluster]) -> Option<Match> {
    let hostname = peer.hostname.trim();
    if hostname.is_empty() {
        return None;
    }
    for c in eligible {
        for pattern in &c.scopes.hostnames {
            if pattern.is_empty() {
                continue;
            }
            match compile_hostname_regex(pattern) {
                Ok(re) if re.is_match(hostname) => {
                    return found(c.id, MatchRule::Hostname, format!("hostname regex {pattern}"));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(cluster_id = c.id, pattern = %pattern, error = %e, "skipping invalid hostname regex in cluster scopes");
                }
            }
        }
    }
    None
}

fn by_idc(peer: &PeerFacts, eligible: &[&Cluster]) -> Option<Match> {
    let idc = peer.idc.trim();
    if idc.is_empty() {
        return None;
    }
    let c = eligible.iter().find(|c| parts(&c.scopes.idc).any(|p| p == idc))?;
    found(c.id, MatchRule::Idc, format!("idc {idc}"))
}

fn by_location(peer: &PeerFacts, eligible: &[&Cluster]) -> Option<Match> {
    let mine: Vec<&str> = peer.location.split('|').map(str::trim).collect();
    let mut best: Option<(usize, &Cluster)> = None;
    for c in eligible {
        let shared = mine
            .iter()
            .zip(c.scopes.location.split('|').map(str::trim))
            .take_while(|(a, b)| !a.is_empty() && *a == b)
            .count();
        if shared > 0 && best.is_none_or(|(n, _)| shared > n) {
            best = Some((shared, c));
        }
    }
    let (n, c) = best?;
    let plural = if n == 1 { "" } else { "s" };
    found(c.id, MatchRule::Location, format!("location {} ({n} element{plural})", mine[..n].join("|")))
}

fn by_default(eligible: &[&Cluster]) -> Option<Match> {
    let c = eligible.iter().find(|c| c.is_default)?;
    found(c.id, MatchRule::Default, "default cluster".to_owned())
}

/// The non-empty, trimmed `|`-separated parts of an IDC scope.
fn parts(scope: &str) -> impl Iterator<Item = &str> {
    scope.split('|').map(str::trim).filter(|p| !p.is_empty())
}

fn parse_cidr(raw: &str) -> Result<IpNet, ipnet::AddrParseError> {
    raw.trim().parse()
}

fn compile_hostname_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build()
}

/// Checks scopes before they are stored: every CIDR parses, every hostname
/// regex is non-empty and compiles within [`REGEX_SIZE_LIMIT`], and a non-empty
/// `idc` or `location` has no empty `|`-separated part and no control
/// characters. The error names the field (`scopes.cidrs[1]`,
/// `scopes.hostnames[0]`, `scopes.idc`, `scopes.location`) and what is wrong.
pub fn validate_scopes(scopes: &Scopes) -> Result<(), (String, String)> {
    for (i, raw) in scopes.cidrs.iter().enumerate() {
        if let Err(e) = parse_cidr(raw) {
            return Err((format!("scopes.cidrs[{i}]"), format!("{raw:?} is not a CIDR such as 10.0.0.0/8: {e}")));
        }
    }
    for (i, pattern) in scopes.hostnames.iter().enumerate() {
        let field = || format!("scopes.hostnames[{i}]");
        if pattern.is_empty() {
            return Err((field(), "empty pattern".to_owned()));
        }
        if let Err(e) = compile_hostname_regex(pattern) {
            return Err((field(), format!("invalid regex: {e}")));
        }
    }
    validate_pipe_list("scopes.idc", &scopes.idc)?;
    validate_pipe_list("scopes.location", &scopes.location)?;
    Ok(())
}

fn validate_pipe_list(field: &str, value: &str) -> Result<(), (String, String)> {
    if value.is_empty() {
        return Ok(()); // no scope
    }
    if value.chars().any(char::is_control) {
        return Err((field.to_owned(), "contains control characters".to_owned()));
    }
    if let Some(i) = value.split('|').position(|p| p.trim().is_empty()) {
        return Err((field.to_owned(), format!("part {} of {value:?} is empty", i + 1)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ClusterConfig, Timestamp};

    #[derive(Default, Clone)]
    struct C {
        id: i64,
        active: bool,
        default: bool,
        idc: &'static str,
        location: &'static str,
        cidrs: &'static [&'static str],
        hostnames: &'static [&'static str],
    }

    fn candidate(c: &C) -> ClusterCandidate {
        ClusterCandidate {
            cluster: Cluster {
                id: c.id,
                name: format!("cluster-{}", c.id),
                description: String::new(),
                config: ClusterConfig::default(),
                scopes: Scopes {
                    idc: c.idc.to_owned(),
                    location: c.location.to_owned(),
                    cidrs: c.cidrs.iter().map(|s| (*s).to_owned()).collect(),
                    hostnames: c.hostnames.iter().map(|s| (*s).to_owned()).collect(),
                },
                is_default: c.default,
                created_at: Timestamp(0),
                updated_at: Timestamp(0),
            },
            has_active_scheduler: c.active,
        }
    }

    fn act(id: i64) -> C {
        C { id, active: true, ..C::default() }
    }

    fn peer(hostname: &str, ip: &str, idc: &str, location: &str, cluster_id: Option<i64>) -> PeerFacts {
        PeerFacts {
            hostname: hostname.to_owned(),
            ip: ip.parse().unwrap(),
            idc: idc.to_owned(),
            location: location.to_owned(),
            cluster_id,
        }
    }

    struct Case {
        name: &'static str,
        peer: PeerFacts,
        clusters: Vec<C>,
        want: Option<(i64, MatchRule, &'static str)>,
    }

    fn run(cases: Vec<Case>) {
        for case in cases {
            let candidates: Vec<ClusterCandidate> = case.clusters.iter().map(candidate).collect();
            let got = match_cluster(&case.peer, &candidates);
            let got = got.as_ref().map(|m| (m.cluster_id, m.rule, m.detail.as_str()));
            assert_eq!(got, case.want, "case {:?}", case.name);
            // Input order must not matter.
            let mut reversed = candidates.clone();
            reversed.reverse();
            let again = match_cluster(&case.peer, &reversed);
            assert_eq!(
                again.as_ref().map(|m| (m.cluster_id, m.rule, m.detail.as_str())),
                got,
                "case {:?} reversed",
                case.name
            );
        }
    }

    use MatchRule::*;

    #[test]
    fn matching_each_rule_alone() {
        let p = || peer("web-01.example", "10.1.2.3", "hz", "cn|zj|hz", None);
        run(vec![
            Case {
                name: "cluster id",
                peer: peer("x", "192.0.2.1", "", "", Some(7)),
                clusters: vec![act(3), act(7)],
                want: Some((7, ClusterId, "cluster_id 7")),
            },
            Case {
                name: "cidr",
                peer: p(),
                clusters: vec![act(1), C { cidrs: &["10.0.0.0/8"], ..act(2) }],
                want: Some((2, Cidr, "cidr 10.0.0.0/8")),
            },
            Case {
                name: "cidr not containing",
                peer: p(),
                clusters: vec![C { cidrs: &["192.168.0.0/16"], ..act(2) }],
                want: None,
            },
            Case {
                name: "hostname unanchored",
                peer: p(),
                clusters: vec![act(1), C { hostnames: &["web-\\d+"], ..act(4) }],
                want: Some((4, Hostname, "hostname regex web-\\d+")),
            },
            Case {
                name: "hostname anchored no match",
                peer: p(),
                clusters: vec![C { hostnames: &["^example"], ..act(4) }],
                want: None,
            },
            Case {
                name: "hostname lowest id",
                peer: p(),
                clusters: vec![C { hostnames: &["web"], ..act(9) }, C { hostnames: &["nope", "example$"], ..act(5) }],
                want: Some((5, Hostname, "hostname regex example$")),
            },
            Case {
                name: "idc",
                peer: p(),
                clusters: vec![C { idc: "sh", ..act(1) }, C { idc: "hz", ..act(2) }],
                want: Some((2, Idc, "idc hz")),
            },
            Case { name: "idc case-sensitive", peer: p(), clusters: vec![C { idc: "HZ", ..act(1) }], want: None },
            Case {
                name: "multi idc a|b",
                peer: p(),
                clusters: vec![C { idc: "sh|bj", ..act(1) }, C { idc: "sh | hz", ..act(3) }, C { idc: "hz", ..act(8) }],
                want: Some((3, Idc, "idc hz")),
            },
            Case {
                name: "idc no substring match",
                peer: p(),
                clusters: vec![C { idc: "hzz|h", ..act(1) }],
                want: None,
            },
            Case {
                name: "location",
                peer: p(),
                clusters: vec![C { location: "us", ..act(1) }, C { location: "cn|zj", ..act(2) }],
                want: Some((2, Location, "location cn|zj (2 elements)")),
            },
            Case {
                name: "default",
                peer: p(),
                clusters: vec![act(1), C { default: true, ..act(2) }],
                want: Some((2, Default, "default cluster")),
            },
            Case { name: "nothing matches, no default", peer: p(), clusters: vec![act(1), act(2)], want: None },
            Case { name: "no clusters", peer: p(), clusters: vec![], want: None },
        ]);
    }

    #[test]
    fn matching_precedence() {
        // Cluster n matches by rule n only; removing the winner exposes the next rule.
        let all = [
            act(1),
            C { cidrs: &["10.0.0.0/8"], ..act(2) },
            C { hostnames: &["^web"], ..act(3) },
            C { idc: "hz", ..act(4) },
            C { location: "cn|zj|hz", ..act(5) },
            C { default: true, ..act(6) },
        ];
        let p = || peer("web-01", "10.1.2.3", "hz", "cn|zj|hz", Some(1));
        let want = [
            (1, ClusterId, "cluster_id 1"),
            (2, Cidr, "cidr 10.0.0.0/8"),
            (3, Hostname, "hostname regex ^web"),
            (4, Idc, "idc hz"),
            (5, Location, "location cn|zj|hz (3 elements)"),
            (6, Default, "default cluster"),
        ];
        let mut cases = Vec::new();
        for (skip, w) in want.iter().enumerate() {
            cases.push(Case {
                name: w.2,
                peer: p(),
                clusters: all.iter().skip(skip).cloned().collect(),
                want: Some(*w),
            });
        }
        cases.push(Case { name: "none left", peer: p(), clusters: vec![], want: None });
        run(cases);
    }

    #[test]
    fn matching_cidr_longest_prefix_and_ties() {
        run(vec![
            Case {
                name: "longest prefix wins over lower id",
                peer: peer("h", "10.1.2.3", "", "", None),
                clusters: vec![
                    C { cidrs: &["10.0.0.0/8"], ..act(1) },
                    C { cidrs: &["0.0.0.0/0", "10.1.0.0/16"], ..act(2) },
                    C { cidrs: &["10.1.3.0/24"], ..act(3) },
                ],
                want: Some((2, Cidr, "cidr 10.1.0.0/16")),
            },
            Case {
                name: "same prefix: lowest id",
                peer: peer("h", "10.1.2.3", "", "", None),
                clusters: vec![C { cidrs: &["10.1.0.0/16"], ..act(9) }, C { cidrs: &["10.1.0.0/16"], ..act(4) }],
                want: Some((4, Cidr, "cidr 10.1.0.0/16")),
            },
            Case {
                name: "host route /32",
                peer: peer("h", "10.1.2.3", "", "", None),
                clusters: vec![C { cidrs: &["10.1.0.0/16"], ..act(1) }, C { cidrs: &["10.1.2.3/32"], ..act(2) }],
                want: Some((2, Cidr, "cidr 10.1.2.3/32")),
            },
            Case {
                name: "ipv6",
                peer: peer("h", "2001:db8:1::5", "", "", None),
                clusters: vec![
                    C { cidrs: &["10.0.0.0/8", "2001:db8::/32"], ..act(1) },
                    C { cidrs: &["2001:db8:1::/48"], ..act(2) },
                    C { cidrs: &["2001:db9::/32"], ..act(3) },
                ],
                want: Some((2, Cidr, "cidr 2001:db8:1::/48")),
            },
            Case {
                name: "ipv4 cidr does not contain ipv6 peer",
                peer: peer("h", "::1", "", "", None),
                clusters: vec![C { cidrs: &["0.0.0.0/0"], ..act(1) }],
                want: None,
            },
            Case {
                name: "ipv4-mapped ipv6 peer matches ipv4 cidr",
                peer: peer("h", "::ffff:10.1.2.3", "", "", None),
                clusters: vec![C { cidrs: &["10.0.0.0/8"], ..act(1) }],
                want: Some((1, Cidr, "cidr 10.0.0.0/8")),
            },
        ]);
    }

    #[test]
    fn matching_location_longest_prefix_and_ties() {
        let p = |loc| peer("h", "192.0.2.1", "", loc, None);
        run(vec![
            Case {
                name: "longest shared prefix",
                peer: p("cn|zj|hz"),
                clusters: vec![
                    C { location: "cn", ..act(1) },
                    C { location: "cn|zj|nb", ..act(2) },
                    C { location: "cn|zj|hz|xihu", ..act(3) },
                ],
                want: Some((3, Location, "location cn|zj|hz (3 elements)")),
            },
            Case {
                name: "tie: lowest id",
                peer: p("cn|zj|hz"),
                clusters: vec![C { location: "cn|zj|nb", ..act(7) }, C { location: "cn|zj", ..act(5) }],
                want: Some((5, Location, "location cn|zj (2 elements)")),
            },
            Case {
                name: "first element must match",
                peer: p("cn|zj|hz"),
                clusters: vec![C { location: "us|zj|hz", ..act(1) }],
                want: None,
            },
            Case {
                name: "one element",
                peer: p("cn"),
                clusters: vec![C { location: "cn|zj", ..act(1) }],
                want: Some((1, Location, "location cn (1 element)")),
            },
            Case {
                name: "empty peer location never matches empty scope",
                peer: p(""),
                clusters: vec![act(1), C { location: "|x", ..act(2) }],
                want: None,
            },
            Case {
                name: "whitespace trimmed",
                peer: p("cn | zj"),
                clusters: vec![C { location: "cn|zj ", ..act(1) }],
                want: Some((1, Location, "location cn|zj (2 elements)")),
            },
        ]);
    }

    #[test]
    fn matching_inactive_clusters_never_returned() {
        let p = |id| peer("web-01", "10.1.2.3", "hz", "cn|zj|hz", id);
        let inactive = |c: C| C { active: false, ..c };
        run(vec![
            Case {
                name: "explicit id inactive falls through to cidr",
                peer: p(Some(1)),
                clusters: vec![inactive(act(1)), C { cidrs: &["10.0.0.0/8"], ..act(2) }],
                want: Some((2, Cidr, "cidr 10.0.0.0/8")),
            },
            Case {
                name: "explicit id unknown falls through to default",
                peer: p(Some(42)),
                clusters: vec![C { default: true, ..act(2) }],
                want: Some((2, Default, "default cluster")),
            },
            Case {
                name: "longer inactive cidr loses to shorter active",
                peer: p(None),
                clusters: vec![
                    inactive(C { cidrs: &["10.1.2.0/24"], ..act(1) }),
                    C { cidrs: &["10.0.0.0/8"], ..act(2) },
                ],
                want: Some((2, Cidr, "cidr 10.0.0.0/8")),
            },
            Case {
                name: "inactive cidr match falls to hostname rule",
                peer: p(None),
                clusters: vec![inactive(C { cidrs: &["10.0.0.0/8"], ..act(1) }), C { hostnames: &["web"], ..act(2) }],
                want: Some((2, Hostname, "hostname regex web")),
            },
            Case {
                name: "inactive hostname/idc fall to location",
                peer: p(None),
                clusters: vec![
                    inactive(C { hostnames: &["web"], ..act(1) }),
                    inactive(C { idc: "hz", ..act(2) }),
                    C { location: "cn", ..act(3) },
                ],
                want: Some((3, Location, "location cn (1 element)")),
            },
            Case {
                name: "longer inactive location loses",
                peer: p(None),
                clusters: vec![inactive(C { location: "cn|zj|hz", ..act(1) }), C { location: "cn|zj", ..act(2) }],
                want: Some((2, Location, "location cn|zj (2 elements)")),
            },
            Case {
                name: "inactive default",
                peer: p(None),
                clusters: vec![inactive(C { default: true, ..act(1) }), act(2)],
                want: None,
            },
            Case {
                name: "everything inactive",
                peer: p(Some(1)),
                clusters: vec![inactive(C {
                    default: true,
                    cidrs: &["10.0.0.0/8"],
                    hostnames: &["web"],
                    idc: "hz",
                    location: "cn",
                    ..act(1)
                })],
                want: None,
            },
        ]);
    }

    #[test]
    fn matching_skips_invalid_stored_scopes() {
        let p = || peer("web-01", "10.1.2.3", "", "", None);
        run(vec![
            Case {
                name: "invalid cidr skipped, valid one in same cluster used",
                peer: p(),
                clusters: vec![C { cidrs: &["10.0.0.0/33", "garbage", "10.1.0.0/16"], ..act(1) }],
                want: Some((1, Cidr, "cidr 10.1.0.0/16")),
            },
            Case {
                name: "invalid regex skipped",
                peer: p(),
                clusters: vec![C { hostnames: &["web(", ""], ..act(1) }, C { hostnames: &["^web-0"], ..act(2) }],
                want: Some((2, Hostname, "hostname regex ^web-0")),
            },
            Case {
                name: "oversized regex skipped",
                peer: p(),
                clusters: vec![C { hostnames: &["\\w{1000}{1000}"], ..act(1) }, C { default: true, ..act(2) }],
                want: Some((2, Default, "default cluster")),
            },
        ]);
    }

    #[test]
    fn matching_validate_scopes() {
        let scopes = |cidrs: &[&str], hostnames: &[&str], idc: &str, location: &str| Scopes {
            idc: idc.to_owned(),
            location: location.to_owned(),
            cidrs: cidrs.iter().map(|s| (*s).to_owned()).collect(),
            hostnames: hostnames.iter().map(|s| (*s).to_owned()).collect(),
        };
        let cases: Vec<(&str, Scopes, Option<&str>)> = vec![
            ("empty ok", Scopes::default(), None),
            ("all ok", scopes(&["10.0.0.0/8", "2001:db8::/32"], &["^web-\\d+$"], "hz|sh", "cn|zj|hz"), None),
            ("bad cidr index", scopes(&["10.0.0.0/8", "10.0.0.0"], &[], "", ""), Some("scopes.cidrs[1]")),
            ("cidr prefix too long", scopes(&["10.0.0.0/33"], &[], "", ""), Some("scopes.cidrs[0]")),
            ("bad regex", scopes(&[], &["ok", "a("], "", ""), Some("scopes.hostnames[1]")),
            ("empty regex", scopes(&[], &[""], "", ""), Some("scopes.hostnames[0]")),
            ("huge regex", scopes(&[], &["\\w{1000}{1000}"], "", ""), Some("scopes.hostnames[0]")),
            ("empty idc part", scopes(&[], &[], "hz||sh", ""), Some("scopes.idc")),
            ("trailing idc pipe", scopes(&[], &[], "hz|", ""), Some("scopes.idc")),
            ("idc control char", scopes(&[], &[], "h\tz", ""), Some("scopes.idc")),
            ("empty location part", scopes(&[], &[], "", "cn| |hz"), Some("scopes.location")),
            ("location control char", scopes(&[], &[], "", "cn\n"), Some("scopes.location")),
        ];
        for (name, s, want) in cases {
            let got = validate_scopes(&s);
            match (want, &got) {
                (None, Ok(())) => {}
                (Some(field), Err((f, msg))) => {
                    assert_eq!(f, field, "case {name:?}: {msg}");
                    assert!(!msg.is_empty(), "case {name:?}");
                }
                _ => panic!("case {name:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn matching_rule_names() {
        assert_eq!(serde_json::to_string(&ClusterId).unwrap(), "\"cluster_id\"");
        assert_eq!(Default.to_string(), "default");
    }
}
