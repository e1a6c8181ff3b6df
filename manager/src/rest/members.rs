//! `/schedulers` and `/seed-peers`: list, get, delete inactive. Members are
//! written only by their own registration and keepalives (gRPC).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Id, Params};
use super::views::MemberView;
use crate::auth::Caller;
use crate::error::Error;
use crate::store::{MemberKind, MemberState, StoreError};

/// Filters for member lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MemberFilter {
    /// Only this cluster's members.
    pub cluster_id: Option<i64>,
    /// `active` or `inactive`.
    #[param(value_type = Option<String>)]
    pub state: Option<MemberState>,
}

/// The scheduler and seed-peer routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedulers))
        .routes(routes!(get_scheduler, delete_scheduler))
        .routes(routes!(list_seed_peers))
        .routes(routes!(get_seed_peer, delete_seed_peer))
}

async fn list(s: &AppState, kind: MemberKind, f: MemberFilter) -> Result<Json<Vec<MemberView>>, ApiError> {
    let members = s.ctx.store.find_members(kind, f.cluster_id, f.state).await?;
    Ok(Json(members.iter().map(MemberView::from).collect()))
}

async fn get(s: &AppState, kind: MemberKind, id: i64) -> Result<Json<MemberView>, ApiError> {
    let member = s.ctx.store.get_member(kind, id).await.map_err(not_found(kind, id))?;
    Ok(Json((&member).into()))
}

async fn delete(s: &AppState, caller: &Caller, kind: MemberKind, id: i64) -> Result<StatusCode, ApiError> {
    caller.require_root()?;
    s.ctx.store.delete_inactive_member(kind, id).await.map_err(not_found(kind, id))?;
    tracing::info!(?kind, id, user = %caller.user.name, "inactive member deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn not_found(kind: MemberKind, id: i64) -> impl Fn(StoreError) -> Error {
    move |e| match e {
        StoreError::NotFound => Error::NotFound(format!("{} {id} not found", kind_name(kind))),
        e => e.into(),
    }
}

fn kind_name(kind: MemberKind) -> &'static str {
    match kind {
        MemberKind::Scheduler => "scheduler",
        MemberKind::SeedPeer => "seed peer",
    }
}

/// Registered schedulers.
#[utoipa::path(get, path = "/schedulers", tag = "members", security(("bearer" = [])), params(MemberFilter),
    responses((status = 200, body = [MemberView]), (status = 400, body = ErrorBody)))]
async fn list_schedulers(
    State(s): State<AppState>,
    _caller: Caller,
    Params(f): Params<MemberFilter>,
) -> Result<Json<Vec<MemberView>>, ApiError> {
    list(&s, MemberKind::Scheduler, f).await
}

/// One scheduler.
#[utoipa::path(get, path = "/schedulers/{id}", tag = "members", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = MemberView), (status = 404, body = ErrorBody)))]
async fn get_scheduler(State(s): State<AppState>, _caller: Caller, Id(id): Id) -> Result<Json<MemberView>, ApiError> {
    get(&s, MemberKind::Scheduler, id).await
}

/// Deletes an inactive scheduler (root); an active one is a 409.
#[utoipa::path(delete, path = "/schedulers/{id}", tag = "members", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_scheduler(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode, ApiError> {
    delete(&s, &caller, MemberKind::Scheduler, id).await
}

/// Registered seed peers.
#[utoipa::path(get, path = "/seed-peers", tag = "members", security(("bearer" = [])), params(MemberFilter),
    responses((status = 200, body = [MemberView]), (status = 400, body = ErrorBody)))]
async fn list_seed_peers(
    State(s): State<AppState>,
    _caller: Caller,
    Params(f): Params<MemberFilter>,
) -> Result<Json<Vec<MemberView>>, ApiError> {
    list(&s, MemberKind::SeedPeer, f).await
}

/// One seed peer.
#[utoipa::path(get, path = "/seed-peers/{id}", tag = "members", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = MemberView), (status = 404, body = ErrorBody)))]
async fn get_seed_peer(State(s): State<AppState>, _caller: Caller, Id(id): Id) -> Result<Json<MemberView>, ApiError> {
    get(&s, MemberKind::SeedPeer, id).await
}

/// Deletes an inactive seed peer (root); an active one is a 409.
#[utoipa::path(delete, path = "/seed-peers/{id}", tag = "members", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_seed_peer(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode, ApiError> {
    delete(&s, &caller, MemberKind::SeedPeer, id).await
}
