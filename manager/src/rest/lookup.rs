//! `/match`: which cluster would this host get, by which rule — the same
//! answer `ListSchedulers` gives, computed fresh.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Params;
use super::views::{ClusterView, MemberView};
use crate::auth::Caller;
use crate::error::Error;
use crate::lookup::resolve;
use crate::matching::PeerFacts;

/// The host to match.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HostQuery {
    /// The host's IP (required).
    pub ip: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub idc: String,
    /// `country|province|city|...`
    #[serde(default)]
    pub location: String,
    /// An explicit cluster ID, as a dfdaemon's config may give.
    pub cluster_id: Option<i64>,
}

/// The answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchView {
    pub cluster: ClusterView,
    /// `cluster_id`, `cidr`, `hostname`, `idc`, `location` or `default`.
    pub rule: String,
    /// What matched (`10.0.0.0/8`, the regex, the IDC, the location prefix).
    pub detail: String,
    pub schedulers: Vec<MemberView>,
    pub seed_peers: Vec<MemberView>,
}

/// The `/match` route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(match_host))
}

/// Which cluster a host with these facts would be given, and why.
#[utoipa::path(get, path = "/match", tag = "clusters", security(("bearer" = [])), params(HostQuery),
    responses((status = 200, body = MatchView), (status = 400, body = ErrorBody),
        (status = 404, description = "no cluster with an active scheduler matches", body = ErrorBody)))]
async fn match_host(
    State(s): State<AppState>,
    _caller: Caller,
    Params(q): Params<HostQuery>,
) -> Result<Json<MatchView>, ApiError> {
    let ip = q.ip.trim().parse().map_err(|_| Error::invalid("ip", format!("{:?} is not an IP address", q.ip)))?;
    let peer = PeerFacts { hostname: q.hostname, ip, idc: q.idc, location: q.location, cluster_id: q.cluster_id };
    let r = resolve(&s.ctx.store, &peer).await?;
    Ok(Json(MatchView {
        cluster: r.cluster.into(),
        rule: r.found.rule.as_str().to_owned(),
        detail: r.found.detail,
        schedulers: r.schedulers.iter().map(MemberView::from).collect(),
        seed_peers: r.seed_peers.iter().map(MemberView::from).collect(),
    }))
}
