//! The dfdaemon and the manager (ARCHITECTURE.md sections 2 and 5), when
//! `manager.addrs` is set:
//!
//! - [`Discovery`]: which schedulers serve this host. `ListSchedulers` with
//!   the host's facts at start and every `manager.refresh_interval`; the
//!   matched cluster's active schedulers become the scheduler list (sorted,
//!   so every peer hashes tasks over the same list). The last good answer is
//!   kept on disk ([`cache`]) and used when the manager cannot be reached at
//!   start, so a manager outage does not stop downloads; with neither,
//!   `scheduler.addrs` stays (when empty: no scheduler is reachable). An answer
//!   naming no scheduler, or no cluster, never replaces a good list.
//! - [`seed_membership`]: a seed peer registers as one and keeps alive.

pub mod cache;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use darter_common::manager_client::{Managers, Membership, Registration, is_no_cluster};
use darter_proto::common::v1 as pb;
use darter_proto::manager::v1 as mpb;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::scheduler_client::SchedulerClient;

/// First pause before asking again while the manager has never answered
/// (e.g. the daemon started with its cluster); doubles up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Keeps the scheduler list in line with the manager; see the module doc.
#[derive(Debug)]
pub struct Discovery {
    managers: Managers,
    request: mpb::ListSchedulersRequest,
    schedulers: Arc<SchedulerClient>,
    data_dir: PathBuf,
    refresh_interval: Duration,
}

/// Why an attempt gave no usable list (the current list stays).
enum Miss {
    /// The manager answered, but names no scheduler for this host.
    Empty(String),
    /// No manager could be asked.
    Unreachable(String),
}

impl Discovery {
    /// Discovery for the host `host` (its hostname, IP, IDC and location are
    /// what the manager matches). Fails on a bad `manager.addrs`.
    pub fn new(
        config: &Config,
        host: &pb::Host,
        schedulers: Arc<SchedulerClient>,
        transport: &darter_common::tls::Transport,
    ) -> Result<Self, String> {
        let managers = Managers::new(&config.manager.addrs, transport).map_err(|e| format!("manager.addrs: {e}"))?;
        let request = mpb::ListSchedulersRequest {
            hostname: host.hostname.clone(),
            ip: host.ip.clone(),
            idc: host.idc.clone(),
            location: host.location.clone(),
            cluster_id: config.manager.cluster_id.unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        Ok(Self {
            managers,
            request,
            schedulers,
            data_dir: config.storage.data_dir.clone(),
            refresh_interval: config.manager.refresh_interval,
        })
    }

    /// The first list, before the daemon serves: the manager's answer, else
    /// the last one on disk, else `scheduler.addrs`. Returns whether the
    /// manager answered.
    pub async fn start(&self) -> bool {
        let miss = match self.refresh().await {
            Ok(()) => return true,
            Err(Miss::Empty(why) | Miss::Unreachable(why)) => why,
        };
        tracing::warn!(error = %miss, "cannot get the schedulers from the manager at start");
        let dir = self.data_dir.clone();
        let cached =
            tokio::task::spawn_blocking(move || cache::load(&dir)).await.unwrap_or_else(|e| Err(e.to_string()));
        match cached {
            Ok(Some(answer)) if !answer.schedulers.is_empty() => {
                let addrs: Vec<String> = answer.schedulers.iter().map(SocketAddr::to_string).collect();
                tracing::info!(
                    schedulers = ?addrs, cluster = %answer.cluster_name, manager = %answer.manager,
                    age = %humantime::format_duration(answer.age()),
                    "using the schedulers of the manager's last answer on disk"
                );
                self.schedulers.set_addrs(&addrs);
            }
            Ok(_) => self.log_fallback(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot use the manager's last answer on disk");
                self.log_fallback();
            }
        }
        false
    }

    fn log_fallback(&self) {
        let addrs = self.schedulers.addrs();
        if addrs.is_empty() {
            tracing::warn!("no scheduler known until the manager answers: downloads go to the origin");
        } else {
            tracing::info!(schedulers = ?addrs, "using scheduler.addrs until the manager answers");
        }
    }

    /// Asks again every refresh interval (sooner, backing off, while the
    /// manager has never answered) until `shutdown`.
    pub async fn run(self, mut answered: bool, shutdown: CancellationToken) {
        let mut retry = FIRST_RETRY;
        let mut failing = !answered;
        loop {
            let pause = if answered { self.refresh_interval } else { retry.min(self.refresh_interval) };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            match self.refresh().await {
                Ok(()) => {
                    if failing {
                        tracing::info!("the manager answers again");
                    }
                    (answered, failing) = (true, false);
                }
                Err(miss) => {
                    let why = match &miss {
                        Miss::Empty(why) | Miss::Unreachable(why) => why,
                    };
                    // Once per outage at WARN; the list in use is kept.
                    if failing {
                        tracing::debug!(error = %why, "cannot refresh the schedulers");
                    } else {
                        tracing::warn!(error = %why, schedulers = ?self.schedulers.addrs(), "cannot refresh the schedulers; keeping the last list");
                    }
                    failing = true;
                    retry = (retry * 2).min(self.refresh_interval);
                }
            }
        }
    }

    /// One `ListSchedulers`: a non-empty answer becomes the list and is saved.
    async fn refresh(&self) -> Result<(), Miss> {
        let answer = match self.managers.list_schedulers(self.request.clone()).await {
            Ok(a) => a,
            Err(status) if is_no_cluster(&status) => {
                return Err(Miss::Empty(format!("no cluster serves this host: {}", status.message())));
            }
            Err(status) => return Err(Miss::Unreachable(status.message().to_string())),
        };
        let r = &answer.response;
        let mut addrs: Vec<SocketAddr> =
            r.schedulers.iter().filter_map(darter_common::manager_client::member_addr).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(Miss::Empty(format!("cluster {:?} has no usable active scheduler", r.cluster_name)));
        }
        let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
        if self.schedulers.set_addrs(&list) {
            tracing::info!(
                schedulers = ?list, cluster = %r.cluster_name, cluster_id = r.cluster_id, manager = %answer.manager,
                "schedulers from the manager"
            );
            // New schedulers know this host before its first download.
            self.schedulers.announce_host().await;
        }
        let saved = cache::CachedAnswer::now(answer.manager.clone(), r.cluster_id, r.cluster_name.clone(), addrs);
        let dir = self.data_dir.clone();
        match tokio::task::spawn_blocking(move || cache::save(&dir, &saved)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the manager's answer"),
            Err(e) => tracing::warn!(error = %e, "cannot save the manager's answer"),
        }
        Ok(())
    }
}

/// A seed peer's membership (register as a seed peer with its host's IP,
/// upload and piece ports, IDC and location, then keep alive); `None` for a
/// normal peer or without a manager.
pub fn seed_membership(
    config: &Config,
    host: &pb::Host,
    transport: &darter_common::tls::Transport,
) -> Result<Option<Membership>, String> {
    if !config.host.seed || config.manager.addrs.is_empty() {
        return Ok(None);
    }
    let managers = Managers::new(&config.manager.addrs, transport).map_err(|e| format!("manager.addrs: {e}"))?;
    let registration = Registration::SeedPeer(mpb::RegisterSeedPeerRequest {
        host: Some(host.clone()),
        cluster_id: config.manager.cluster_id.unwrap_or(0),
    });
    Ok(Some(Membership::new(managers, registration, config.manager.keepalive_interval)))
}
