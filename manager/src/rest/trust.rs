//! Enrollment and trust: `/join-tokens` (root creates, lists and revokes the
//! tokens members enroll with; the secret is shown once), `/certificates`
//! (what the CA issued; root revokes), `/ca` (the CA certificate and its pin).
//! Revoking a token revokes every certificate it enrolled; a revoked member
//! is refused at its next connection.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Body;
use crate::auth::Caller;
use crate::error::Error;
use crate::pki::{CreatedJoinToken, JoinTokenRequest, Pki};
use crate::store::{IssuedCert, JoinToken};

/// The trust routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_certificates))
        .routes(routes!(revoke_certificate))
        .routes(routes!(ca))
}

fn pki(s: &AppState) -> Result<&Pki, Error> {
    s.pki.as_deref().ok_or_else(|| Error::NotFound("this manager runs in plaintext mode (tls.mode): no CA".into()))
}

fn check_id(field: &'static str, id: &str, max: usize) -> Result<(), Error> {
    if id.is_empty() || id.len() > max || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(Error::invalid(field, format!("must be 1 to {max} characters of a-z and 0-9")));
    }
    Ok(())
}

/// The CA members trust.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaView {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// Its pin, `sha256:<hex>`: a member's `tls.ca_cert_hash`.
    pub ca_cert_hash: String,
}

/// Every join token (root), without secrets.
#[utoipa::path(get, path = "/join-tokens", tag = "trust", security(("bearer" = [])),
    responses((status = 200, body = [Object]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_tokens(State(s): State<AppState>, caller: Caller) -> Result<Json<Vec<JoinToken>>, ApiError> {
    caller.require_root()?;
    pki(&s)?;
    Ok(Json(s.ctx.store.list_join_tokens().await?))
}

/// Creates a join token (root). The answer holds `join_token` and
/// `ca_cert_hash`, what a member's `tls.join_token` and `tls.ca_cert_hash`
/// take; the secret is shown this once.
#[utoipa::path(post, path = "/join-tokens", tag = "trust", security(("bearer" = [])),
    request_body = JoinTokenRequest,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<JoinTokenRequest>,
) -> Result<(StatusCode, Json<CreatedJoinToken>), ApiError> {
    caller.require_root()?;
    let default_cluster = s.ctx.store.default_cluster().await?.id;
    let created = pki(&s)?.create_join_token(&req, default_cluster).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a join token and every certificate it enrolled (root).
#[utoipa::path(delete, path = "/join-tokens/{id}", tag = "trust", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_root()?;
    check_id("id", &id, 16)?;
    pki(&s)?.revoke_join_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unexpired certificates the CA issued.
#[utoipa::path(get, path = "/certificates", tag = "trust", security(("bearer" = [])),
    responses((status = 200, body = [Object]), (status = 401, body = ErrorBody)))]
async fn list_certificates(State(s): State<AppState>, _caller: Caller) -> Result<Json<Vec<IssuedCert>>, ApiError> {
    pki(&s)?;
    Ok(Json(s.ctx.store.list_certificates(s.ctx.clock.timestamp()).await?))
}

/// Revokes one certificate (root): its holder is refused at its next
/// connection and cannot renew.
#[utoipa::path(delete, path = "/certificates/{serial}", tag = "trust", security(("bearer" = [])),
    params(("serial" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_certificate(
    State(s): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_root()?;
    if serial.is_empty() || serial.len() > 64 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid("serial", "must be 1 to 64 hex digits").into());
    }
    pki(&s)?.revoke_certificate(&serial.to_ascii_lowercase()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The CA certificate and its pin.
#[utoipa::path(get, path = "/ca", tag = "trust", security(("bearer" = [])),
    responses((status = 200, body = CaView), (status = 401, body = ErrorBody)))]
async fn ca(State(s): State<AppState>, _caller: Caller) -> Result<Json<CaView>, ApiError> {
    let pki = pki(&s)?;
    Ok(Json(CaView { ca_pem: pki.ca_pem().to_owned(), ca_cert_hash: pki.ca_cert_hash().to_owned() }))
}
