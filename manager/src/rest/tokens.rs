//! `/personal-access-tokens`: a user's tokens for automation. Each user sees
//! and deletes only its own; the secret is shown once, on creation.

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
use super::views::TokenView;
use crate::auth::{Caller, new_pat};
use crate::error::Error;
use crate::store::{NewToken, StoreError};

/// Longest token lifetime accepted (ten years).
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    pub name: String,
    /// How long it is valid (`30d`, `12h`); absent: until deleted.
    pub expires_in: Option<String>,
}

/// The token routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(delete))
}

/// The caller's tokens.
#[utoipa::path(get, path = "/personal-access-tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = [TokenView]), (status = 401, body = ErrorBody)))]
async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<Vec<TokenView>>, ApiError> {
    Ok(Json(s.ctx.store.list_tokens(caller.user.id).await?.iter().map(TokenView::from).collect()))
}

/// Creates a token for the caller; the answer holds its secret, shown this once.
#[utoipa::path(post, path = "/personal-access-tokens", tag = "tokens", security(("bearer" = [])),
    request_body = NewTokenRequest,
    responses((status = 201, body = TokenView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewTokenRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let expires_at = match req.expires_in.as_deref() {
        None => None,
        Some(text) => {
            let d = humantime::parse_duration(text)
                .map_err(|e| Error::invalid("expires_in", format!("{text:?} is not a duration such as 30d: {e}")))?;
            if d.is_zero() || d > MAX_LIFETIME {
                return Err(Error::invalid("expires_in", "must be more than 0 and at most 10 years").into());
            }
            Some(s.ctx.clock.timestamp().saturating_add(d))
        }
    };
    let (secret, token_hash) = new_pat();
    let new = NewToken { name: req.name, token_hash, user_id: caller.user.id, expires_at };
    let token = s.ctx.store.create_token(&new).await?;
    tracing::info!(id = token.id, name = %token.name, user = %caller.user.name, "access token created");
    let mut view = TokenView::from(&token);
    view.token = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Deletes one of the caller's tokens.
#[utoipa::path(delete, path = "/personal-access-tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(State(s): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode, ApiError> {
    // Another user's token is "not found", not "forbidden": its existence is not the caller's business.
    let owned = s.ctx.store.list_tokens(caller.user.id).await?.iter().any(|t| t.id == id);
    if !owned {
        return Err(Error::NotFound(format!("access token {id} not found")).into());
    }
    match s.ctx.store.delete_token(id).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(id, user = %caller.user.name, "access token deleted");
    Ok(StatusCode::NO_CONTENT)
}
