//! Background membership upkeep: members whose keepalives stopped for longer
//! than the grace period become inactive, and inactive rows not heard from for
//! `inactive_gc_after` are deleted. Both are plain conditional updates, so
//! several manager replicas may run them at once.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::context::Context;
use crate::store::{MemberKind, MemberState};

/// How often inactive rows are collected (their age limit is hours, not seconds).
const GC_INTERVAL: Duration = Duration::from_secs(60);

/// How often the member gauges are refreshed.
const CENSUS_INTERVAL: Duration = Duration::from_secs(5);

const KINDS: [MemberKind; 2] = [MemberKind::Scheduler, MemberKind::SeedPeer];

/// Runs until the context's shutdown token is cancelled.
pub async fn run(ctx: Arc<Context>, config: &Config) {
    let mut expiry = tokio::time::interval(config.expiry_interval);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gc = tokio::time::interval(GC_INTERVAL.min(config.inactive_gc_after));
    gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut census = tokio::time::interval(CENSUS_INTERVAL);
    census.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            _ = census.tick() => count(&ctx).await,
            _ = expiry.tick() => expire(&ctx, config.keepalive_grace).await,
            _ = gc.tick() => collect(&ctx, config.inactive_gc_after).await,
        }
    }
}

async fn expire(ctx: &Context, grace: Duration) {
    let now = ctx.clock.timestamp();
    for kind in KINDS {
        match ctx.store.expire_members(kind, now.saturating_sub(grace), now).await {
            Ok(0) => {}
            Ok(n) => {
                ctx.invalidate("members expired").await;
                tracing::info!(?kind, count = n, "members missed their keepalives; now inactive");
            }
            Err(e) => tracing::warn!(?kind, error = %e, "cannot expire members"),
        }
    }
}

async fn collect(ctx: &Context, after: Duration) {
    let now = ctx.clock.timestamp();
    if let Err(e) = ctx.store.gc_revoked_sessions(now).await {
        tracing::warn!(error = %e, "cannot forget expired signed-out tokens");
    }
    let before = now.saturating_sub(after);
    for kind in KINDS {
        match ctx.store.gc_inactive_members(kind, before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(?kind, count = n, "inactive members deleted"),
            Err(e) => tracing::warn!(?kind, error = %e, "cannot delete inactive members"),
        }
    }
}

/// Refreshes the `manager_members` gauges.
async fn count(ctx: &Context) {
    for kind in KINDS {
        match ctx.store.find_members(kind, None, None).await {
            Ok(members) => {
                let active = members.iter().filter(|m| m.state == MemberState::Active).count();
                let label = match kind {
                    MemberKind::Scheduler => "scheduler",
                    MemberKind::SeedPeer => "seed_peer",
                };
                ctx.metrics.set_members(label, "active", active);
                ctx.metrics.set_members(label, "inactive", members.len() - active);
            }
            Err(e) => tracing::warn!(?kind, error = %e, "cannot count members"),
        }
    }
}
