//! Members over gRPC for the tests that need them: a scheduler or seed peer
//! registered and kept alive on an open keepalive stream ([`LiveMember`]).

use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_client::ManagerClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A registered scheduler (or seed peer) with its keepalive stream held open
/// while `tx` lives; `call` yields the keepalive call's result.
pub struct LiveMember {
    pub member: pb::Member,
    pub tx: mpsc::Sender<pb::KeepAliveRequest>,
    pub call: tokio::task::JoinHandle<Result<(), tonic::Status>>,
}

impl LiveMember {
    pub fn id(&self) -> i64 {
        i64::try_from(self.member.id).unwrap()
    }

    /// Closes the keepalive stream; the member is inactive once this returns
    /// (the manager answers the call only after marking it).
    pub async fn close(self) {
        drop(self.tx);
        let deadline = testkit::eventually::patience(testkit::eventually::DEADLINE);
        tokio::time::timeout(deadline, self.call).await.expect("keepalive call ends").unwrap().unwrap();
    }
}

/// The keepalive message for `m`.
pub fn keepalive(m: &pb::Member) -> pb::KeepAliveRequest {
    pb::KeepAliveRequest { kind: m.kind, member_id: m.id, hostname: m.hostname.clone(), ip: m.ip.clone() }
}

/// Registers a scheduler in `cluster_id` (0: the default) and keeps it alive.
pub async fn scheduler(client: &ManagerClient<Channel>, hostname: &str, ip: &str, cluster_id: i64) -> LiveMember {
    let req = pb::RegisterSchedulerRequest {
        hostname: hostname.into(),
        ip: ip.into(),
        port: 8002,
        cluster_id: u64::try_from(cluster_id).unwrap(),
        version: "test".into(),
        ..Default::default()
    };
    let member = client.clone().register_scheduler(req).await.unwrap().into_inner();
    hold(client, member).await
}

/// Registers a seed peer in `cluster_id` (0: the default) and keeps it alive.
pub async fn seed_peer(client: &ManagerClient<Channel>, hostname: &str, ip: &str, cluster_id: i64) -> LiveMember {
    let host = darter_proto::common::v1::Host {
        hostname: hostname.into(),
        ip: ip.into(),
        port: 4000,
        download_port: 4001,
        ..Default::default()
    };
    let req = pb::RegisterSeedPeerRequest { host: Some(host), cluster_id: u64::try_from(cluster_id).unwrap() };
    let member = client.clone().register_seed_peer(req).await.unwrap().into_inner();
    hold(client, member).await
}

/// Opens `member`'s keepalive stream, sends one keepalive and holds it open.
pub async fn hold(client: &ManagerClient<Channel>, member: pb::Member) -> LiveMember {
    let (tx, rx) = mpsc::channel(4);
    tx.send(keepalive(&member)).await.unwrap();
    let mut c = client.clone();
    let call = tokio::spawn(async move { c.keep_alive(ReceiverStream::new(rx)).await.map(|r| r.into_inner()) });
    LiveMember { member, tx, call }
}
