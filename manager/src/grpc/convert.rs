//! Protobuf <-> domain conversions: requests are validated once here, so the
//! service never handles unchecked strings or out-of-range numbers.

use std::net::IpAddr;

use darter_proto::manager::v1 as pb;

use crate::error::Error;
use crate::matching::{MatchRule, PeerFacts};
use crate::store::{ClusterConfig, Member, MemberKind, MemberState, Registration};

/// A registration as asked for; `cluster_id` `None` is the default cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    pub cluster_id: Option<i64>,
    /// `cluster_id` is filled in by the service once the cluster is resolved.
    pub registration: Registration,
}

fn ip(field: &'static str, s: &str) -> Result<IpAddr, Error> {
    s.trim().parse().map_err(|_| Error::invalid(field, format!("{s:?} is not an IP address")))
}

fn hostname(field: &'static str, s: &str) -> Result<String, Error> {
    if s.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    Ok(s.to_owned())
}

fn port(field: &'static str, p: u32) -> Result<u16, Error> {
    match u16::try_from(p) {
        Ok(0) => Err(Error::invalid(field, "must not be 0")),
        Ok(p) => Ok(p),
        Err(_) => Err(Error::invalid(field, format!("{p} is not a port"))),
    }
}

/// The cluster asked for; 0 means the default one. An ID past `i64` cannot exist.
fn cluster_id(id: u64) -> Result<Option<i64>, Error> {
    match id {
        0 => Ok(None),
        id => i64::try_from(id).map(Some).map_err(|_| Error::NotFound(format!("cluster {id} not found"))),
    }
}

/// A member ID from the wire (row IDs are positive `i64`).
pub fn member_id(id: u64) -> Result<i64, Error> {
    match i64::try_from(id) {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(Error::invalid("member_id", format!("{id} is not a member ID"))),
    }
}

/// A member kind from the wire.
pub fn member_kind(kind: i32) -> Result<MemberKind, Error> {
    match pb::MemberKind::try_from(kind) {
        Ok(pb::MemberKind::Scheduler) => Ok(MemberKind::Scheduler),
        Ok(pb::MemberKind::SeedPeer) => Ok(MemberKind::SeedPeer),
        _ => Err(Error::invalid("kind", "must be MEMBER_KIND_SCHEDULER or MEMBER_KIND_SEED_PEER")),
    }
}

impl TryFrom<pb::RegisterSchedulerRequest> for RegisterRequest {
    type Error = Error;

    fn try_from(r: pb::RegisterSchedulerRequest) -> Result<Self, Error> {
        Ok(RegisterRequest {
            cluster_id: cluster_id(r.cluster_id)?,
            registration: Registration {
                kind: MemberKind::Scheduler,
                cluster_id: 0,
                hostname: hostname("hostname", &r.hostname)?,
                ip: ip("ip", &r.ip)?,
                port: port("port", r.port)?,
                download_port: None,
                idc: r.idc,
                location: r.location,
            },
        })
    }
}

impl TryFrom<pb::RegisterSeedPeerRequest> for RegisterRequest {
    type Error = Error;

    fn try_from(r: pb::RegisterSeedPeerRequest) -> Result<Self, Error> {
        let host = r.host.ok_or_else(|| Error::invalid("host", "is required"))?;
        Ok(RegisterRequest {
            cluster_id: cluster_id(r.cluster_id)?,
            registration: Registration {
                kind: MemberKind::SeedPeer,
                cluster_id: 0,
                hostname: hostname("host.hostname", &host.hostname)?,
                ip: ip("host.ip", &host.ip)?,
                port: port("host.port", host.port)?,
                download_port: Some(port("host.download_port", host.download_port)?),
                idc: host.idc,
                location: host.location,
            },
        })
    }
}

/// One keepalive, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    pub kind: MemberKind,
    pub member_id: i64,
    pub hostname: String,
    pub ip: IpAddr,
}

impl TryFrom<pb::KeepAliveRequest> for KeepAlive {
    type Error = Error;

    fn try_from(r: pb::KeepAliveRequest) -> Result<Self, Error> {
        Ok(KeepAlive {
            kind: member_kind(r.kind)?,
            member_id: member_id(r.member_id)?,
            hostname: hostname("hostname", &r.hostname)?,
            ip: ip("ip", &r.ip)?,
        })
    }
}

impl KeepAlive {
    /// Whether `member` is the one this keepalive names.
    pub fn names(&self, member: &Member) -> bool {
        member.kind == self.kind
            && member.id == self.member_id
            && member.hostname == self.hostname
            && member.ip == self.ip
    }
}

impl TryFrom<pb::ListSchedulersRequest> for PeerFacts {
    type Error = Error;

    fn try_from(r: pb::ListSchedulersRequest) -> Result<Self, Error> {
        Ok(PeerFacts {
            hostname: r.hostname,
            ip: ip("ip", &r.ip)?,
            idc: r.idc,
            location: r.location,
            // An ID past i64 cannot name a cluster: it falls through like an unknown one.
            cluster_id: match r.cluster_id {
                0 => None,
                id => Some(i64::try_from(id).unwrap_or(i64::MAX)),
            },
        })
    }
}

/// A stored member on the wire.
pub fn member(m: &Member) -> pb::Member {
    pb::Member {
        id: u64::try_from(m.id).unwrap_or_default(),
        kind: match m.kind {
            MemberKind::Scheduler => pb::MemberKind::Scheduler,
            MemberKind::SeedPeer => pb::MemberKind::SeedPeer,
        } as i32,
        hostname: m.hostname.clone(),
        ip: m.ip.to_string(),
        port: m.port.into(),
        download_port: m.download_port.map_or(0, u32::from),
        idc: m.idc.clone(),
        location: m.location.clone(),
        cluster_id: u64::try_from(m.cluster_id).unwrap_or_default(),
        state: match m.state {
            MemberState::Active => pb::MemberState::Active,
            MemberState::Inactive => pb::MemberState::Inactive,
        } as i32,
        last_keepalive_at: u64::try_from(m.last_keepalive_at.0 / 1000).unwrap_or_default(),
    }
}

/// A match rule on the wire.
pub fn rule(r: MatchRule) -> pb::MatchRule {
    match r {
        MatchRule::ClusterId => pb::MatchRule::ClusterId,
        MatchRule::Cidr => pb::MatchRule::Cidr,
        MatchRule::Hostname => pb::MatchRule::Hostname,
        MatchRule::Idc => pb::MatchRule::Idc,
        MatchRule::Location => pb::MatchRule::Location,
        MatchRule::Default => pb::MatchRule::Default,
    }
}

/// A cluster config on the wire.
pub fn cluster_config(c: &ClusterConfig) -> pb::ClusterConfig {
    pb::ClusterConfig {
        candidate_parent_limit: c.candidate_parent_limit,
        back_to_source_limit: c.back_to_source_limit,
        load_limit: c.load_limit,
    }
}

/// A resolved lookup as the `ListSchedulers` answer.
pub fn answer(r: &crate::lookup::Resolved) -> pb::ListSchedulersResponse {
    pb::ListSchedulersResponse {
        cluster_id: u64::try_from(r.cluster.id).unwrap_or_default(),
        cluster_name: r.cluster.name.clone(),
        matched_rule: rule(r.found.rule) as i32,
        schedulers: r.schedulers.iter().map(member).collect(),
        seed_peers: r.seed_peers.iter().map(member).collect(),
        config: Some(cluster_config(&r.cluster.config)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_validated_at_the_boundary() {
        let ok = pb::RegisterSchedulerRequest {
            hostname: "s1".into(),
            ip: "10.0.0.1".into(),
            port: 8002,
            ..Default::default()
        };
        let r = RegisterRequest::try_from(ok.clone()).unwrap();
        assert_eq!((r.cluster_id, r.registration.port), (None, 8002));
        let field = |r: pb::RegisterSchedulerRequest| match RegisterRequest::try_from(r).unwrap_err() {
            Error::InvalidArgument { field, .. } => field.into_owned(),
            e => panic!("{e:?}"),
        };
        assert_eq!(field(pb::RegisterSchedulerRequest { hostname: " ".into(), ..ok.clone() }), "hostname");
        assert_eq!(field(pb::RegisterSchedulerRequest { ip: "10.0.0".into(), ..ok.clone() }), "ip");
        assert_eq!(field(pb::RegisterSchedulerRequest { port: 0, ..ok.clone() }), "port");
        assert_eq!(field(pb::RegisterSchedulerRequest { port: 70000, ..ok.clone() }), "port");
        assert!(matches!(
            RegisterRequest::try_from(pb::RegisterSchedulerRequest { cluster_id: u64::MAX, ..ok }),
            Err(Error::NotFound(_))
        ));
        let seed = pb::RegisterSeedPeerRequest { host: None, cluster_id: 0 };
        assert!(
            matches!(RegisterRequest::try_from(seed), Err(Error::InvalidArgument { field, .. }) if field == "host")
        );
    }

    #[test]
    fn keepalive_needs_a_kind_and_id() {
        let ok = pb::KeepAliveRequest {
            kind: pb::MemberKind::Scheduler as i32,
            member_id: 1,
            hostname: "s1".into(),
            ip: "10.0.0.1".into(),
        };
        assert!(KeepAlive::try_from(ok.clone()).is_ok());
        assert!(KeepAlive::try_from(pb::KeepAliveRequest { kind: 0, ..ok.clone() }).is_err());
        assert!(KeepAlive::try_from(pb::KeepAliveRequest { member_id: 0, ..ok }).is_err());
    }
}
