//! `/users` (sign in and out, the caller, CRUD by root, passwords) and `/roles`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Body, Id};
use super::views::{UserView, time};
use crate::auth::{Caller, check_password};
use crate::error::Error;
use crate::store::{NewUser, Role, StoreError, UserUpdate};

/// Sign-in request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub name: String,
    pub password: String,
}

/// A signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignInResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: String,
    pub user: UserView,
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub name: String,
    /// At least 8 bytes.
    pub password: String,
    /// `root` or `guest`.
    #[schema(value_type = String, example = "guest")]
    pub role: Role,
}

/// Fields of a user root may change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(value_type = Option<String>, example = "root")]
    pub role: Option<Role>,
    pub password: Option<String>,
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Required when changing one's own password.
    pub old_password: Option<String>,
    pub new_password: String,
}

/// A role and what it allows.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    pub name: String,
    pub permissions: Vec<String>,
}

// The request types hold passwords: keep them out of any debug output.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), " { .. }"))
            }
        }
    )*};
}
redacted_debug!(SignInRequest, NewUserRequest, UserPatch, PasswordChange);

/// The user and role routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(list, create))
        .routes(routes!(get, patch, delete))
        .routes(routes!(change_password))
        .routes(routes!(roles))
}

/// Signs in with a name and password; answers a token. Failed attempts slow
/// down the next ones from the same address: a 429 with `Retry-After` (also
/// when too many sign-ins are being checked at once).
#[utoipa::path(post, path = "/users/signin", tag = "users", request_body = SignInRequest,
    responses((status = 200, body = SignInResponse), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
async fn sign_in(
    State(s): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Body(req): Body<SignInRequest>,
) -> Result<Json<SignInResponse>, ApiError> {
    let signed = s.auth.sign_in(&req.name, &req.password, client.ip()).await.inspect_err(|e| match e {
        Error::Unauthenticated(_) => {
            s.ctx.metrics.sign_in("refused");
            tracing::info!(name = %req.name, client = %client.ip(), "sign-in refused");
        }
        Error::TooManyRequests { .. } => {
            s.ctx.metrics.sign_in("throttled");
            tracing::debug!(name = %req.name, client = %client.ip(), "sign-in throttled");
        }
        _ => {}
    })?;
    s.ctx.metrics.sign_in("ok");
    tracing::info!(user = %signed.user.name, "signed in");
    Ok(Json(SignInResponse { token: signed.token, expires_at: time(signed.expires_at), user: (&signed.user).into() }))
}

/// Signs out: the sign-in token used is refused from now on.
#[utoipa::path(post, path = "/users/signout", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn sign_out(State(s): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    s.auth.sign_out(&caller).await?;
    tracing::info!(user = %caller.user.name, "signed out");
    Ok(StatusCode::NO_CONTENT)
}

/// The caller.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
async fn me(caller: Caller) -> Json<UserView> {
    Json((&caller.user).into())
}

/// Every user.
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [UserView]), (status = 401, body = ErrorBody)))]
async fn list(State(s): State<AppState>, _caller: Caller) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(s.ctx.store.list_users().await?.iter().map(UserView::from).collect()))
}

/// Creates a user (root).
#[utoipa::path(post, path = "/users", tag = "users", security(("bearer" = [])), request_body = NewUserRequest,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require_root()?;
    check_name(&req.name)?;
    check_password("password", &req.password)?;
    let password_hash = s.auth.hash_password(&req.password).await?;
    let user = s.ctx.store.create_user(&NewUser { name: req.name, password_hash, role: req.role }).await?;
    tracing::info!(id = user.id, name = %user.name, role = ?user.role, by = %caller.user.name, "user created");
    Ok((StatusCode::CREATED, Json((&user).into())))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
async fn get(State(s): State<AppState>, _caller: Caller, Id(id): Id) -> Result<Json<UserView>, ApiError> {
    Ok(Json((&s.ctx.store.get_user(id).await.map_err(not_found(id))?).into()))
}

/// Changes a user's role or password (root). The last root cannot be demoted.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = UserPatch, responses((status = 200, body = UserView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn patch(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    caller.require_root()?;
    let password_hash = match &req.password {
        Some(p) => {
            check_password("password", p)?;
            Some(s.auth.hash_password(p).await?)
        }
        None => None,
    };
    let user = s
        .ctx
        .store
        .update_user(id, &UserUpdate { password_hash, role: req.role }, s.ctx.clock.timestamp())
        .await
        .map_err(not_found(id))?;
    tracing::info!(id, role = ?user.role, by = %caller.user.name, "user updated");
    Ok(Json((&user).into()))
}

/// Deletes a user and its tokens (root). The last root cannot be deleted.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn delete(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode, ApiError> {
    caller.require_root()?;
    s.ctx.store.delete_user(id).await.map_err(not_found(id))?;
    tracing::info!(id, by = %caller.user.name, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a password: one's own with the old password, anyone's as root.
#[utoipa::path(put, path = "/users/{id}/password", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn change_password(
    State(s): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    caller: Caller,
    Id(id): Id,
    Body(req): Body<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let own = caller.user.id == id;
    if !own {
        caller.require_root()?;
    }
    check_password("new_password", &req.new_password)?;
    let user = s.ctx.store.get_user(id).await.map_err(not_found(id))?;
    if own {
        let old = req.old_password.as_deref().ok_or_else(|| Error::invalid("old_password", "is required"))?;
        if !s.auth.check_own_password(&user, old, client.ip()).await? {
            return Err(Error::invalid("old_password", "does not match").into());
        }
    }
    let password_hash = Some(s.auth.hash_password(&req.new_password).await?);
    s.ctx
        .store
        .update_user(id, &UserUpdate { password_hash, role: None }, s.ctx.clock.timestamp())
        .await
        .map_err(not_found(id))?;
    tracing::info!(id, by = %caller.user.name, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// The roles and what they allow.
#[utoipa::path(get, path = "/roles", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [RoleView]), (status = 401, body = ErrorBody)))]
async fn roles(_caller: Caller) -> Json<Vec<RoleView>> {
    let role = |name: &str, permissions: &[&str]| RoleView {
        name: name.into(),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
    };
    Json(vec![role("root", &["read", "write"]), role("guest", &["read"])])
}

fn check_name(name: &str) -> Result<(), Error> {
    crate::store::validate_name("name", name).map_err(Error::from)
}

fn not_found(id: i64) -> impl Fn(StoreError) -> Error {
    move |e| match e {
        StoreError::NotFound => Error::NotFound(format!("user {id} not found")),
        e => e.into(),
    }
}
