//! How an [`Error`] becomes an HTTP answer: one JSON shape,
//! `{"error": {"code", "message", "field"?}}`, and the matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable label: `invalid_argument`, `unauthenticated`, `permission_denied`,
    /// `not_found`, `no_cluster`, `already_exists`, `conflict`,
    /// `too_many_requests`, `too_large`, `timeout`, `internal`, ...
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field at fault (`scopes.cidrs[1]`), for `invalid_argument`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An [`Error`] on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

/// `Retry-After` in whole seconds: rounded up, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The HTTP status for an error.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) | Error::NoCluster => StatusCode::NOT_FOUND,
        Error::AlreadyExists(_) => StatusCode::CONFLICT,
        Error::ShuttingDown | Error::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let message = match &e {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error answering a REST request");
                "internal error".to_owned()
            }
            e => e.to_string(),
        };
        let field = match &e {
            Error::InvalidArgument { field, .. } => Some(field.to_string()),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: e.reason().as_str().to_owned(), message, field } };
        let mut response = (status(&e), Json(body)).into_response();
        match &e {
            Error::Unauthenticated(_) => {
                response
                    .headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            }
            Error::TooManyRequests { retry_after, .. } => {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after_secs(*retry_after).into());
            }
            _ => {}
        }
        response
    }
}
