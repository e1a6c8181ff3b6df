//! Triggering seed peers: `DfdaemonUpload.TriggerDownloadTask` on the seed's
//! upload API, over one lazily connected channel per configured seed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use darter_common::sync::MutexExt as _;
use darter_common::task_id::TaskId;
use darter_common::tls::{Expect, Transport};
use darter_proto::common::v1 as pb;
use darter_proto::dfdaemon::v1::TriggerDownloadTaskRequest;
use darter_proto::dfdaemon::v1::dfdaemon_upload_client::DfdaemonUploadClient;
use tonic::transport::{Channel, Endpoint};

/// Connect timeout to a seed: a seed that does not answer quickly is skipped
/// (the registering peer is waiting for its answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one trigger call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Client of the configured seeds.
#[derive(Debug)]
pub struct SeedClient {
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    transport: Transport,
    cluster_id: u64,
}

impl SeedClient {
    /// A client with no connection yet; with mutual TLS, a seed must present
    /// a seed peer certificate of `cluster_id`.
    pub fn new(transport: Transport, cluster_id: u64) -> Self {
        Self { channels: Mutex::default(), transport, cluster_id }
    }

    /// Asks the seed at `addr` to fetch `download` (task `task_id`) from the
    /// origin now. The error says why it did not take the trigger.
    pub async fn trigger(&self, addr: SocketAddr, task_id: &TaskId, download: &pb::Download) -> Result<(), String> {
        let mut client = DfdaemonUploadClient::new(self.channel(addr)?);
        // The output path is the requester's local path: meaningless on the seed.
        let download = pb::Download { output_path: String::new(), ..download.clone() };
        let request = TriggerDownloadTaskRequest { task_id: task_id.to_string(), download: Some(download) };
        client.trigger_download_task(request).await.map(|_| ()).map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    }

    fn channel(&self, addr: SocketAddr) -> Result<Channel, String> {
        let mut channels = self.channels.locked();
        if let Some(c) = channels.get(&addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad seed address {addr}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true);
        let channel = self.transport.channel(endpoint, Expect::seed_peer(self.cluster_id));
        channels.insert(addr, channel.clone());
        Ok(channel)
    }
}
