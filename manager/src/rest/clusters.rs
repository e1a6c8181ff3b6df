//! `/clusters`: CRUD, scopes and config. Every write is validated in full
//! before the one store call that makes it, and invalidates the
//! `ListSchedulers` cache.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Body, Id};
use super::views::ClusterView;
use crate::auth::Caller;
use crate::error::Error;
use crate::matching::validate_scopes;
use crate::store::{ClusterConfig, NewCluster, Scopes};

/// Longest cluster description.
const MAX_DESCRIPTION: usize = 4096;
/// Upper bounds for config values (a typo such as `load_limit: 32000000` is refused).
const MAX_CANDIDATE_PARENTS: u32 = 64;
const MAX_BACK_TO_SOURCE: u32 = 1024;
const MAX_LOAD: u32 = 100_000;

/// Cluster fields in a request: all optional; what is absent keeps its
/// current value (`PATCH`) or takes its default (`POST`, `PUT`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterInput {
    /// Unique name (required on create).
    pub name: Option<String>,
    pub description: Option<String>,
    /// Making a cluster the default takes the flag from the previous one.
    pub is_default: Option<bool>,
    pub config: Option<ConfigInput>,
    pub scopes: Option<ScopesInput>,
}

/// Config fields in a request; absent ones keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    pub candidate_parent_limit: Option<u32>,
    pub back_to_source_limit: Option<u32>,
    pub load_limit: Option<u32>,
}

/// Scope fields in a request; absent ones keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopesInput {
    /// One or several IDCs, `|`-separated.
    pub idc: Option<String>,
    /// `country|province|city|...`, matched by longest prefix.
    pub location: Option<String>,
    /// CIDRs such as `10.0.0.0/8`.
    pub cidrs: Option<Vec<String>>,
    /// Hostname regexes.
    pub hostnames: Option<Vec<String>>,
}

impl ConfigInput {
    fn apply(self, c: &mut ClusterConfig) {
        c.candidate_parent_limit = self.candidate_parent_limit.unwrap_or(c.candidate_parent_limit);
        c.back_to_source_limit = self.back_to_source_limit.unwrap_or(c.back_to_source_limit);
        c.load_limit = self.load_limit.unwrap_or(c.load_limit);
    }
}

impl ScopesInput {
    fn apply(self, s: &mut Scopes) {
        s.idc = self.idc.unwrap_or(std::mem::take(&mut s.idc));
        s.location = self.location.unwrap_or(std::mem::take(&mut s.location));
        s.cidrs = self.cidrs.unwrap_or(std::mem::take(&mut s.cidrs));
        s.hostnames = self.hostnames.unwrap_or(std::mem::take(&mut s.hostnames));
    }
}

impl ClusterInput {
    fn apply(self, c: &mut NewCluster) {
        c.name = self.name.unwrap_or(std::mem::take(&mut c.name));
        c.description = self.description.unwrap_or(std::mem::take(&mut c.description));
        c.is_default = self.is_default.unwrap_or(c.is_default);
        if let Some(config) = self.config {
            config.apply(&mut c.config);
        }
        if let Some(scopes) = self.scopes {
            scopes.apply(&mut c.scopes);
        }
    }
}

/// Every check a cluster passes before it is written; the error names the field.
pub fn validate(c: &NewCluster) -> Result<(), Error> {
    crate::store::validate_name("name", &c.name)?;
    if c.description.len() > MAX_DESCRIPTION {
        return Err(Error::invalid("description", format!("longer than {MAX_DESCRIPTION} bytes")));
    }
    let limits = [
        ("config.candidate_parent_limit", c.config.candidate_parent_limit, 1, MAX_CANDIDATE_PARENTS),
        ("config.back_to_source_limit", c.config.back_to_source_limit, 0, MAX_BACK_TO_SOURCE),
        ("config.load_limit", c.config.load_limit, 1, MAX_LOAD),
    ];
    for (field, value, min, max) in limits {
        if !(min..=max).contains(&value) {
            return Err(Error::invalid(field, format!("{value} is outside {min}..={max}")));
        }
    }
    validate_scopes(&c.scopes).map_err(|(field, message)| Error::invalid(field, message))
}

fn current(c: crate::store::Cluster) -> NewCluster {
    NewCluster {
        name: c.name,
        description: c.description,
        config: c.config,
        scopes: c.scopes,
        is_default: c.is_default,
    }
}

/// The cluster routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, replace, patch, delete))
        .routes(routes!(get_scopes, put_scopes))
        .routes(routes!(get_config, put_config))
}

/// Every cluster.
#[utoipa::path(get, path = "/clusters", tag = "clusters", security(("bearer" = [])),
    responses((status = 200, body = [ClusterView]), (status = 401, body = ErrorBody)))]
async fn list(State(s): State<AppState>, _caller: Caller) -> Result<Json<Vec<ClusterView>>, ApiError> {
    Ok(Json(s.ctx.store.list_clusters().await?.into_iter().map(ClusterView::from).collect()))
}

/// Creates a cluster (root).
#[utoipa::path(post, path = "/clusters", tag = "clusters", security(("bearer" = [])), request_body = ClusterInput,
    responses((status = 201, body = ClusterView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(input): Body<ClusterInput>,
) -> Result<(StatusCode, Json<ClusterView>), ApiError> {
    caller.require_root()?;
    if input.name.is_none() {
        return Err(Error::invalid("name", "is required").into());
    }
    let mut new = NewCluster::default();
    input.apply(&mut new);
    validate(&new)?;
    let cluster = s.ctx.store.create_cluster(&new).await?;
    s.ctx.invalidate("cluster created").await;
    tracing::info!(id = cluster.id, name = %cluster.name, user = %caller.user.name, "cluster created");
    Ok((StatusCode::CREATED, Json(cluster.into())))
}

/// One cluster.
#[utoipa::path(get, path = "/clusters/{id}", tag = "clusters", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = ClusterView), (status = 404, body = ErrorBody)))]
async fn get(State(s): State<AppState>, _caller: Caller, Id(id): Id) -> Result<Json<ClusterView>, ApiError> {
    Ok(Json(s.ctx.store.get_cluster(id).await.map_err(not_found(id))?.into()))
}

/// Replaces a cluster (root): absent fields take their defaults, except
/// `is_default`, which keeps its value.
#[utoipa::path(put, path = "/clusters/{id}", tag = "clusters", security(("bearer" = [])), request_body = ClusterInput,
    params(("id" = i64, Path)), responses((status = 200, body = ClusterView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn replace(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(input): Body<ClusterInput>,
) -> Result<Json<ClusterView>, ApiError> {
    caller.require_root()?;
    if input.name.is_none() {
        return Err(Error::invalid("name", "is required").into());
    }
    let before = s.ctx.store.get_cluster(id).await.map_err(not_found(id))?;
    let mut new = NewCluster { is_default: before.is_default, ..NewCluster::default() };
    input.apply(&mut new);
    write(&s, &caller, id, new).await
}

/// Changes some fields of a cluster (root); nested `config` and `scopes`
/// fields merge too.
#[utoipa::path(patch, path = "/clusters/{id}", tag = "clusters", security(("bearer" = [])), request_body = ClusterInput,
    params(("id" = i64, Path)), responses((status = 200, body = ClusterView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn patch(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(input): Body<ClusterInput>,
) -> Result<Json<ClusterView>, ApiError> {
    caller.require_root()?;
    let mut new = current(s.ctx.store.get_cluster(id).await.map_err(not_found(id))?);
    input.apply(&mut new);
    write(&s, &caller, id, new).await
}

async fn write(s: &AppState, caller: &Caller, id: i64, new: NewCluster) -> Result<Json<ClusterView>, ApiError> {
    validate(&new)?;
    let cluster = s.ctx.store.update_cluster(id, &new).await.map_err(not_found(id))?;
    s.ctx.invalidate("cluster updated").await;
    tracing::info!(id, name = %cluster.name, user = %caller.user.name, "cluster updated");
    Ok(Json(cluster.into()))
}

/// Deletes a cluster (root); not the default one, not one with members.
#[utoipa::path(delete, path = "/clusters/{id}", tag = "clusters", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode, ApiError> {
    caller.require_root()?;
    s.ctx.store.delete_cluster(id).await.map_err(not_found(id))?;
    s.ctx.invalidate("cluster deleted").await;
    tracing::info!(id, user = %caller.user.name, "cluster deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A cluster's scopes.
#[utoipa::path(get, path = "/clusters/{id}/scopes", tag = "clusters", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Scopes), (status = 404, body = ErrorBody)))]
async fn get_scopes(State(s): State<AppState>, _caller: Caller, Id(id): Id) -> Result<Json<Scopes>, ApiError> {
    Ok(Json(s.ctx.store.get_cluster(id).await.map_err(not_found(id))?.scopes))
}

/// Replaces a cluster's scopes (root); absent fields become empty.
#[utoipa::path(put, path = "/clusters/{id}/scopes", tag = "clusters", security(("bearer" = [])),
    request_body = ScopesInput, params(("id" = i64, Path)),
    responses((status = 200, body = Scopes), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_scopes(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(input): Body<ScopesInput>,
) -> Result<Json<Scopes>, ApiError> {
    caller.require_root()?;
    let mut new = current(s.ctx.store.get_cluster(id).await.map_err(not_found(id))?);
    new.scopes = Scopes::default();
    input.apply(&mut new.scopes);
    validate(&new).map_err(|e| prefixed(e, "scopes."))?;
    Ok(Json(write(&s, &caller, id, new).await?.0.scopes))
}

/// A cluster's config.
#[utoipa::path(get, path = "/clusters/{id}/config", tag = "clusters", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = ClusterConfig), (status = 404, body = ErrorBody)))]
async fn get_config(State(s): State<AppState>, _caller: Caller, Id(id): Id) -> Result<Json<ClusterConfig>, ApiError> {
    Ok(Json(s.ctx.store.get_cluster(id).await.map_err(not_found(id))?.config))
}

/// Replaces a cluster's config (root); absent fields take their defaults.
#[utoipa::path(put, path = "/clusters/{id}/config", tag = "clusters", security(("bearer" = [])),
    request_body = ConfigInput, params(("id" = i64, Path)),
    responses((status = 200, body = ClusterConfig), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_config(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(input): Body<ConfigInput>,
) -> Result<Json<ClusterConfig>, ApiError> {
    caller.require_root()?;
    let mut new = current(s.ctx.store.get_cluster(id).await.map_err(not_found(id))?);
    new.config = ClusterConfig::default();
    input.apply(&mut new.config);
    validate(&new).map_err(|e| prefixed(e, "config."))?;
    Ok(Json(write(&s, &caller, id, new).await?.0.config))
}

/// On a sub-resource the body is the scopes (config) themselves: `cidrs[0]`,
/// not `scopes.cidrs[0]`; `load_limit`, not `config.load_limit`.
fn prefixed(e: Error, prefix: &str) -> Error {
    match e {
        Error::InvalidArgument { field, message } => match field.strip_prefix(prefix) {
            Some(rest) => Error::invalid(rest.to_owned(), message),
            None => Error::InvalidArgument { field, message },
        },
        e => e,
    }
}

fn not_found(id: i64) -> impl Fn(crate::store::StoreError) -> Error {
    move |e| match e {
        crate::store::StoreError::NotFound => Error::NotFound(format!("cluster {id} not found")),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(c: NewCluster) -> String {
        match validate(&c).unwrap_err() {
            Error::InvalidArgument { field, .. } => field.into_owned(),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let ok = NewCluster { name: "a".into(), ..NewCluster::default() };
        validate(&ok).unwrap();
        assert_eq!(field(NewCluster { name: " ".into(), ..ok.clone() }), "name");
        assert_eq!(field(NewCluster { description: "x".repeat(5000), ..ok.clone() }), "description");
        let mut c = ok.clone();
        c.config.load_limit = 0;
        assert_eq!(field(c), "config.load_limit");
        let mut c = ok.clone();
        c.scopes.cidrs = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()];
        assert_eq!(field(c), "scopes.cidrs[1]");
        let mut c = ok.clone();
        c.scopes.hostnames = vec!["(".into()];
        assert_eq!(field(c), "scopes.hostnames[0]");
        let mut c = ok;
        c.scopes.idc = "a||b".into();
        assert_eq!(field(c), "scopes.idc");
    }

    #[test]
    fn patches_merge_nested_fields() {
        let mut c = NewCluster { name: "a".into(), ..NewCluster::default() };
        c.scopes.idc = "x".into();
        let input: ClusterInput =
            serde_json::from_str(r#"{"config": {"load_limit": 7}, "scopes": {"cidrs": ["10.0.0.0/8"]}}"#).unwrap();
        input.apply(&mut c);
        assert_eq!((c.config.load_limit, c.config.candidate_parent_limit), (7, 4));
        assert_eq!((c.scopes.idc.as_str(), c.scopes.cidrs.len()), ("x", 1));
        assert!(serde_json::from_str::<ClusterInput>(r#"{"nmae": "typo"}"#).is_err());
    }
}
