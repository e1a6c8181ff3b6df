//! Garbage collection by TTL: hosts that stopped announcing (with their
//! peers), peers not heard from, tasks left without peers. Time is a
//! parameter so the rules are tested without waiting.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::GcConfig;
use crate::resource::State;
use crate::service::Context;

/// What one collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Hosts removed.
    pub hosts: usize,
    /// Peers removed (including those of removed hosts).
    pub peers: usize,
    /// Tasks removed.
    pub tasks: usize,
}

/// Removes everything expired at `now`.
pub fn collect(state: &mut State, now: Instant, policy: &GcConfig) -> GcReport {
    let mut report = GcReport::default();
    let expired = |since: Instant, ttl| now.saturating_duration_since(since) > ttl;

    let hosts: Vec<String> =
        state.hosts.values().filter(|h| expired(h.last_announce, policy.host_ttl)).map(|h| h.info.id.clone()).collect();
    for id in &hosts {
        report.peers += state.tasks.values().filter(|t| t.peers.contains_key(id)).count();
        state.leave_host(id, now);
        tracing::info!(host_id = %id, "host expired: no announcement within host_ttl");
    }
    report.hosts = hosts.len();

    for task in state.tasks.values_mut() {
        let before = task.peers.len();
        task.peers.retain(|_, p| {
            let keep = !expired(p.last_seen, policy.peer_ttl);
            if !keep {
                p.evict();
            }
            keep
        });
        if task.peers.len() != before {
            report.peers += before - task.peers.len();
            task.updated_at = now;
        }
    }

    report.tasks = state.retain_tasks(|t| !t.peers.is_empty() || !expired(t.updated_at, policy.task_ttl));
    report
}

/// Collects every `gc.interval` until `shutdown`, and keeps the size gauges current.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.gc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (report, counts) = {
            let mut state = ctx.resources.lock();
            let report = collect(&mut state, Instant::now(), &ctx.config.gc);
            (report, state.counts())
        };
        ctx.metrics.set_counts(counts);
        if report.hosts > 0 {
            ctx.update_seed_gauge();
        }
        if report != GcReport::default() {
            tracing::info!(hosts = report.hosts, peers = report.peers, tasks = report.tasks, "garbage collected");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use darter_common::limits::RequestLimits;
    use darter_common::task_id::TaskId;
    use darter_proto::common::v1 as pb;
    use darter_proto::scheduler::v1 as spb;

    use super::*;
    use crate::resource::{HostInfo, Registration};

    fn host(id: &str) -> HostInfo {
        HostInfo::try_from(pb::Host {
            id: id.into(),
            ip: "10.0.0.1".into(),
            port: 4000,
            download_port: 4003,
            ..Default::default()
        })
        .unwrap()
    }

    fn register(state: &mut State, url: &str, host: &str, now: Instant) -> TaskId {
        let download = pb::Download { url: url.into(), ..Default::default() };
        let id = TaskId::for_download(url, None, "", "").unwrap();
        let reg = Registration::from_request(
            id.as_str(),
            host,
            &format!("peer-{host}"),
            spb::RegisterPeerRequest { download: Some(download), present_pieces: vec![] },
            &RequestLimits::default(),
        )
        .unwrap();
        state.register(&reg, now).unwrap();
        id
    }

    const MIN: Duration = Duration::from_secs(60);

    fn policy() -> GcConfig {
        GcConfig { interval: MIN, peer_ttl: 10 * MIN, task_ttl: 20 * MIN, host_ttl: 5 * MIN }
    }

    #[test]
    fn hosts_expire_with_their_peers() {
        let t0 = Instant::now();
        let mut s = State::default();
        s.announce_host(host("quiet"), t0);
        s.announce_host(host("chatty"), t0);
        let task = register(&mut s, "http://o/a", "quiet", t0);
        register(&mut s, "http://o/a", "chatty", t0);
        let token = s.tasks[&task].peers["quiet"].evicted.clone();
        s.announce_host(host("chatty"), t0 + 4 * MIN);
        assert_eq!(collect(&mut s, t0 + 5 * MIN, &policy()), GcReport::default(), "ttl not yet exceeded");
        let r = collect(&mut s, t0 + 6 * MIN, &policy());
        assert_eq!(r, GcReport { hosts: 1, peers: 1, tasks: 0 });
        assert!(token.is_cancelled(), "its stream is ended");
        assert!(s.hosts.contains_key("chatty") && !s.hosts.contains_key("quiet"));
        assert_eq!(s.tasks[&task].peers.len(), 1);
    }

    #[test]
    fn silent_peers_then_empty_tasks_expire() {
        let t0 = Instant::now();
        let mut s = State::default();
        s.announce_host(host("h"), t0);
        let old = register(&mut s, "http://o/old", "h", t0);
        let fresh = register(&mut s, "http://o/fresh", "h", t0 + 5 * MIN);
        let keep_host = |s: &mut State, at| s.announce_host(host("h"), at);
        keep_host(&mut s, t0 + 9 * MIN);
        let r = collect(&mut s, t0 + 11 * MIN, &policy());
        assert_eq!(r, GcReport { hosts: 0, peers: 1, tasks: 0 });
        assert!(s.tasks[&old].peers.is_empty() && s.tasks[&fresh].peers.len() == 1);
        keep_host(&mut s, t0 + 28 * MIN);
        let r = collect(&mut s, t0 + 30 * MIN, &policy());
        assert_eq!(r, GcReport { hosts: 0, peers: 1, tasks: 0 }, "the emptied task's TTL counts from its last peer");
        keep_host(&mut s, t0 + 31 * MIN);
        let r = collect(&mut s, t0 + 32 * MIN, &policy());
        assert_eq!(r, GcReport { hosts: 0, peers: 0, tasks: 1 });
        assert!(!s.tasks.contains_key(&old) && s.tasks.contains_key(&fresh));
        let r = collect(&mut s, t0 + 60 * MIN, &policy());
        assert_eq!(r, GcReport { hosts: 1, peers: 0, tasks: 1 });
        assert_eq!(s.counts(), (0, 0, 0));
    }
}
