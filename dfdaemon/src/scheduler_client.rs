//! Talking to the schedulers: this host's periodic announcement, and the
//! choice of scheduler per task (the task ID hashed over the configured
//! schedulers, so every peer of a task meets at the same one).

use std::sync::Arc;

use darter_common::task_id::TaskId;
use darter_proto::common::v1 as pb;
use darter_proto::scheduler::v1::{AnnounceHostRequest, LeaveHostRequest, scheduler_client::SchedulerClient as Grpc};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::config::SchedulerConfig;

/// Clients of every configured scheduler, and this host's facts.
#[derive(Debug)]
pub struct SchedulerClient {
    schedulers: Vec<(String, Channel)>,
    host: pb::Host,
    config: SchedulerConfig,
}

impl SchedulerClient {
    /// `None` when no scheduler is configured (downloads go to the origin).
    pub fn new(config: &SchedulerConfig, host: pb::Host) -> Option<Arc<Self>> {
        let schedulers: Vec<(String, Channel)> = config
            .addrs
            .iter()
            .map(|addr| {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .expect("validated IP:PORT")
                    .connect_timeout(config.connect_timeout)
                    .tcp_nodelay(true);
                (addr.clone(), endpoint.connect_lazy())
            })
            .collect();
        (!schedulers.is_empty()).then(|| Arc::new(Self { schedulers, host, config: config.clone() }))
    }

    /// This host as announced.
    pub fn host(&self) -> &pb::Host {
        &self.host
    }

    /// The scheduler that owns `task` (address, client).
    pub fn for_task(&self, task: &TaskId) -> (&str, Grpc<Channel>) {
        let hash = Sha256::digest(task.as_str().as_bytes());
        let n = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")) % self.schedulers.len() as u64;
        let (addr, channel) = &self.schedulers[n as usize];
        (addr, Grpc::new(channel.clone()))
    }

    /// Announces the host to every scheduler; failures are logged.
    pub async fn announce_host(&self) {
        let interval_ms = self.config.announce_interval.as_millis() as u64;
        for (addr, channel) in &self.schedulers {
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
        for (_, channel) in &self.schedulers {
            let mut client = Grpc::new(channel.clone());
            let leave = client.leave_host(LeaveHostRequest { host_id: self.host.id.clone() });
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), leave).await;
        }
    }
}
