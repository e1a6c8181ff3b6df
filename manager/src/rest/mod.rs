//! The REST API (`/api/v1`), its OpenAPI document and the console.

use axum::Router;

/// The REST router.
pub fn router() -> Router {
    Router::new()
}
