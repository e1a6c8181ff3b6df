//! The scheduler as a member of a manager's cluster (ARCHITECTURE.md
//! section 5), started by [`crate::run`] when `manager.addrs` is set:
//!
//! - it registers and keeps alive ([`Membership`]); the goodbye at shutdown
//!   makes the manager stop handing it out at once;
//! - right after each registration and every `manager.refresh_interval`
//!   it asks `ListSchedulers` for its own cluster, whose active seed peers then
//!   count as configured ones ([`crate::seed_peers`]) and whose config
//!   (`candidate_parent_limit`, `back_to_source_limit`, `load_limit`, as the
//!   console edits it) replaces the file's `scheduling` values from the next
//!   decision on ([`Context::apply_cluster_config`]). An answer for another
//!   cluster (this scheduler is not active in its own yet) or no answer leaves
//!   the last list as it is.

use std::net::SocketAddr;
use std::sync::Arc;

use darter_common::manager_client::{Managers, Membership, Registration, is_no_cluster};
use darter_proto::manager::v1 as pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::service::Context;

/// What the scheduler registers: its host facts, with `grpc` (the bound gRPC
/// address) giving the port and, unless `host.ip` is set, the IP.
pub fn registration(config: &Config, grpc: SocketAddr) -> pb::RegisterSchedulerRequest {
    let ip = config.host.ip.unwrap_or_else(|| darter_common::host::advertised_ip(grpc.ip()));
    pb::RegisterSchedulerRequest {
        hostname: config.host.hostname.clone().unwrap_or_else(darter_common::host::os_hostname),
        ip: ip.to_string(),
        port: u32::from(grpc.port()),
        idc: config.host.idc.clone(),
        location: config.host.location.clone(),
        cluster_id: config.manager.cluster_id.unwrap_or(0),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Starts the membership and the seed peer refresh on `tracker`; both stop
/// with `shutdown`. Does nothing without `manager.addrs`.
pub fn spawn(ctx: Arc<Context>, grpc: SocketAddr, shutdown: CancellationToken, tracker: &TaskTracker) {
    if ctx.config.manager.addrs.is_empty() {
        return;
    }
    let managers = match Managers::new(&ctx.config.manager.addrs, &ctx.transport) {
        Ok(m) => m,
        // Validated with the config; kept as a log line rather than a panic.
        Err(e) => return tracing::error!(error = %e, "manager.addrs is unusable; running standalone"),
    };
    let registration = registration(&ctx.config, grpc);
    tracing::info!(
        manager = %managers.addrs().collect::<Vec<_>>().join(","), ip = %registration.ip, port = registration.port,
        "joining the manager's cluster"
    );
    let membership = Membership::new(
        managers.clone(),
        Registration::Scheduler(registration.clone()),
        ctx.config.manager.keepalive_interval,
    );
    let member = membership.subscribe();
    tracker.spawn(membership.run(shutdown.clone()));
    tracker.spawn(refresh_seed_peers(ctx, managers, registration, member, shutdown));
}

/// Asks for the cluster's seed peers after each registration and every
/// refresh interval, until `shutdown`.
async fn refresh_seed_peers(
    ctx: Arc<Context>,
    managers: Managers,
    me: pb::RegisterSchedulerRequest,
    mut member: watch::Receiver<Option<pb::Member>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(ctx.config.manager.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            changed = member.changed() => if changed.is_err() { return },
        }
        let Some(cluster_id) = member.borrow_and_update().as_ref().map(|m| m.cluster_id) else { continue };
        let request = pb::ListSchedulersRequest {
            hostname: me.hostname.clone(),
            ip: me.ip.clone(),
            idc: me.idc.clone(),
            location: me.location.clone(),
            cluster_id,
            version: me.version.clone(),
        };
        match managers.list_schedulers(request).await {
            Ok(answer) if answer.response.cluster_id == cluster_id => {
                if failing {
                    tracing::info!(manager = %answer.manager, "the manager answers again");
                    failing = false;
                }
                apply(&ctx, &answer.response.seed_peers);
                if let Some(config) = &answer.response.config {
                    let changed = ctx.apply_cluster_config(config);
                    if !changed.is_empty() {
                        tracing::info!(changed = ?changed, "the cluster's config from the manager is in force");
                    }
                }
            }
            Ok(answer) => tracing::debug!(
                cluster_id,
                answered = answer.response.cluster_id,
                "the manager matched another cluster (this scheduler is not active in its own); keeping the seed peers"
            ),
            Err(status) if is_no_cluster(&status) => {
                tracing::debug!("no cluster with an active scheduler matches (not active yet); keeping the seed peers");
            }
            Err(status) => {
                let level_warn = !failing;
                failing = true;
                if level_warn {
                    tracing::warn!(error = %status.message(), "cannot ask the manager for seed peers; keeping the last list");
                } else {
                    tracing::debug!(error = %status.message(), "cannot ask the manager for seed peers");
                }
            }
        }
    }
}

/// Makes the listed seed peers the manager's part of the trusted set, and
/// hosts already known follow at once.
fn apply(ctx: &Context, listed: &[pb::Member]) {
    let addrs: Vec<SocketAddr> = listed.iter().filter_map(darter_common::manager_client::member_addr).collect();
    if addrs.len() != listed.len() {
        tracing::warn!("the manager listed seed peers without a usable IP and port; skipping them");
    }
    let Some(change) = ctx.seed_peers.set_from_manager(addrs) else { return };
    let trusted = ctx.seed_peers.all();
    tracing::info!(
        added = ?change.added, removed = ?change.removed, seed_peers = ?trusted,
        "seed peers from the manager changed"
    );
    let changed = ctx.resources.lock().reclassify_seeds(|a| trusted.contains(&a));
    for (host_id, seed) in changed {
        tracing::info!(%host_id, seed, "host reclassified");
    }
    ctx.update_seed_gauge();
}
