//! Talking to the schedulers: this host's periodic announcement, and the
//! choice of scheduler per task (the task ID hashed over the known
//! schedulers, so every peer of a task meets at the same one).
//!
//! The scheduler list starts as `scheduler.addrs` and, with a manager, is
//! replaced by the cluster's active schedulers as the manager (or its last
//! answer on disk) gives them ([`crate::discovery`]); it may be empty until then.

use std::sync::{Arc, RwLock};

use darter_common::sync::RwLockExt as _;
use darter_common::task_id::TaskId;
use darter_common::tls::{Expect, Transport};
use darter_proto::common::v1 as pb;
use darter_proto::scheduler::v1::{AnnounceHostRequest, LeaveHostRequest, scheduler_client::SchedulerClient as Grpc};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::config::SchedulerConfig;

/// The known schedulers (address, lazily connected channel), in hash order.
type Schedulers = Arc<[(String, Channel)]>;

/// Clients of the known schedulers, and this host's facts.
#[derive(Debug)]
pub struct SchedulerClient {
    schedulers: RwLock<Schedulers>,
    host: pb::Host,
    config: SchedulerConfig,
    transport: Transport,
    cluster_id: u64,
}

impl SchedulerClient {
    /// A client of `config.addrs` (possibly none yet) over `transport`: with
    /// mutual TLS, schedulers and parents must be of this member's cluster.
    pub fn new(config: &SchedulerConfig, host: pb::Host, transport: Transport) -> Arc<Self> {
        let cluster_id = transport.identity().map_or(0, |id| id.cluster_id);
        let client =
            Self { schedulers: RwLock::new(Arc::from([])), host, config: config.clone(), transport, cluster_id };
        client.set_addrs(&config.addrs);
        Arc::new(client)
    }

    /// A lazy channel to a parent's upload API (a peer or seed peer of this
    /// member's cluster).
    pub fn parent_channel(&self, endpoint: Endpoint) -> Channel {
        self.transport.channel(endpoint, Expect::daemon(self.cluster_id))
    }

    /// This host as announced.
    pub fn host(&self) -> &pb::Host {
        &self.host
    }

    /// The known scheduler addresses, in hash order.
    pub fn addrs(&self) -> Vec<String> {
        self.snapshot().iter().map(|(a, _)| a.clone()).collect()
    }

    /// Replaces the scheduler list (`IP:PORT` each, already validated, in the
    /// order every peer uses). Channels of schedulers still listed are kept.
    /// Returns whether the list changed.
    pub fn set_addrs(&self, addrs: &[String]) -> bool {
        let mut schedulers = self.schedulers.write_locked();
        if schedulers.iter().map(|(a, _)| a).eq(addrs.iter()) {
            return false;
        }
        let next: Vec<(String, Channel)> = addrs
            .iter()
            .filter_map(|addr| {
                if let Some((_, c)) = schedulers.iter().find(|(a, _)| a == addr) {
                    return Some((addr.clone(), c.clone()));
                }
                match Endpoint::from_shared(format!("http://{addr}")) {
                    Ok(e) => Some((
                        addr.clone(),
                        self.transport.channel(
                            e.connect_timeout(self.config.connect_timeout).tcp_nodelay(true),
                            Expect::scheduler(self.cluster_id),
                        ),
                    )),
                    Err(e) => {
                        tracing::warn!(scheduler = %addr, error = %e, "not a scheduler address; skipping it");
                        None
                    }
                }
            })
            .collect();
        *schedulers = next.into();
        true
    }

    fn snapshot(&self) -> Schedulers {
        self.schedulers.read_locked().clone()
    }

    /// The scheduler that owns `task` (address, client); `None` while no
    /// scheduler is known.
    pub fn for_task(&self, task: &TaskId) -> Option<(String, Grpc<Channel>)> {
        let schedulers = self.snapshot();
        if schedulers.is_empty() {
            return None;
        }
        let hash = Sha256::digest(task.as_str().as_bytes());
        let n = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")) % schedulers.len() as u64;
        let (addr, channel) = &schedulers[n as usize];
        Some((addr.clone(), Grpc::new(channel.clone())))
    }

    /// Announces the host to every known scheduler; failures are logged.
    pub async fn announce_host(&self) {
        let interval_ms = self.config.announce_interval.as_millis() as u64;
        for (addr, channel) in self.snapshot().iter() {
            let request = AnnounceHostRequest { host: Some(self.host.clone()), interval_ms };
            if let Err(e) = Grpc::new(channel.clone()).announce_host(request).await {
                tracing::warn!(scheduler = %addr, error = %e.message(), "cannot announce host");
            }
        }
    }

    /// Announces the host now and every `announce_interval` until shutdown,
    /// then says goodbye.
    pub async fn announce_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.announce_interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.announce_host().await,
            }
        }
        for (_, channel) in self.snapshot().iter() {
            let mut client = Grpc::new(channel.clone());
            let leave = client.leave_host(LeaveHostRequest { host_id: self.host.id.clone() });
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), leave).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(addrs: &[&str]) -> Arc<SchedulerClient> {
        let config = SchedulerConfig { addrs: addrs.iter().map(|a| a.to_string()).collect(), ..Default::default() };
        SchedulerClient::new(&config, pb::Host::default(), Transport::Plaintext)
    }

    #[tokio::test]
    async fn the_list_can_change_and_tasks_follow_it() {
        let c = client(&[]);
        let task = TaskId::for_download("http://origin/f", None, "", "").unwrap();
        assert!(c.for_task(&task).is_none(), "no scheduler yet");
        assert!(c.set_addrs(&["127.0.0.1:8002".into()]));
        assert_eq!(c.for_task(&task).unwrap().0, "127.0.0.1:8002");
        assert!(!c.set_addrs(&["127.0.0.1:8002".into()]), "same list");
        let two = ["127.0.0.1:8002".to_string(), "127.0.0.1:8003".to_string()];
        assert!(c.set_addrs(&two));
        assert_eq!(c.addrs(), two);
        // Every peer with the same list picks the same scheduler for a task.
        assert_eq!(
            c.for_task(&task).unwrap().0,
            client(&["127.0.0.1:8002", "127.0.0.1:8003"]).for_task(&task).unwrap().0
        );
    }
}
