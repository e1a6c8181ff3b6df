//! "Which cluster serves this peer?": the stored clusters run through
//! [`match_cluster`], with the matched cluster's active members. Shared by the
//! gRPC `ListSchedulers` (cached) and the REST `/match` endpoint (always fresh).

use crate::error::Error;
use crate::matching::{ClusterCandidate, Match, PeerFacts, match_cluster};
use crate::store::{Cluster, Member, MemberKind, Store};

/// The answer for one peer.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub cluster: Cluster,
    /// Which rule matched, and on what.
    pub found: Match,
    /// The cluster's active schedulers.
    pub schedulers: Vec<Member>,
    /// The cluster's active seed peers.
    pub seed_peers: Vec<Member>,
}

/// Matches `peer` against the stored clusters; [`Error::NoCluster`] when no
/// cluster with an active scheduler matches.
pub async fn resolve(store: &Store, peer: &PeerFacts) -> Result<Resolved, Error> {
    let active = store.clusters_with_active_schedulers().await?;
    let candidates: Vec<ClusterCandidate> = store
        .list_clusters()
        .await?
        .into_iter()
        .map(|cluster| ClusterCandidate { has_active_scheduler: active.contains(&cluster.id), cluster })
        .collect();
    let found = match_cluster(peer, &candidates).ok_or(Error::NoCluster)?;
    let cluster = candidates
        .into_iter()
        .map(|c| c.cluster)
        .find(|c| c.id == found.cluster_id)
        .ok_or_else(|| Error::Internal(format!("matched cluster {} vanished", found.cluster_id)))?;
    let schedulers = store.list_active_members(MemberKind::Scheduler, cluster.id).await?;
    let seed_peers = store.list_active_members(MemberKind::SeedPeer, cluster.id).await?;
    Ok(Resolved { cluster, found, schedulers, seed_peers })
}
