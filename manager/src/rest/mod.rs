//! The REST API (`/api/v1`), its OpenAPI document and the console.
//!
//! Layout: one file per resource (`clusters`, `members`, `users`, `tokens`,
//! `trust` for join tokens, certificates and the CA, `lookup` for `/match`), each exporting `routes()`; `extract` (JSON body,
//! path ID, query and caller extractors whose rejections name the field),
//! `error` (the one error body), `views` (what is returned), `console` (the
//! embedded web UI), `headers` (the security headers of every answer),
//! `server` (the accept loop and its limits, `rest:` in the config). Handlers carry `#[utoipa::path]` annotations and are
//! registered through `utoipa_axum`, so the OpenAPI document served at
//! `/api/v1/openapi.json` is generated from the same code that routes.
//!
//! Who may do what: every route but sign-in and the OpenAPI document needs a
//! token ([`crate::auth`]); reads are open to every role, writes need `root`,
//! except a user's own password, tokens and sign-out.

mod clusters;
mod console;
mod error;
mod extract;
mod headers;
mod lookup;
mod members;
pub mod server;
mod tokens;
mod trust;
mod users;
mod views;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

pub use error::{ErrorBody, ErrorDetail};

use crate::auth::Auth;
use crate::context::Context;
use crate::error::Error;

/// What every handler gets.
#[derive(Debug, Clone)]
pub struct AppState {
    pub ctx: Arc<Context>,
    pub auth: Arc<Auth>,
    /// The cluster's CA; `None` when the manager runs in plaintext mode.
    pub pki: Option<Arc<crate::pki::Pki>>,
}

/// The OpenAPI document's fixed parts; paths and schemas come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Darter manager API",
        description = "Clusters, scopes, members, users and tokens. See docs/manager.md."
    ),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

/// The API routes and the OpenAPI document describing them.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    let v1 = OpenApiRouter::new()
        .merge(clusters::routes())
        .merge(members::routes())
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(trust::routes())
        .merge(lookup::routes());
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1).split_for_parts();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    (router, doc)
}

/// The whole REST service: API, OpenAPI document, console, JSON 404s. Served
/// by [`server::serve`], which applies the limits (the body size included).
pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = Arc::new(doc);
    api.route("/api/v1/openapi.json", axum::routing::get(move || openapi(doc.clone())))
        .merge(console::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request by its route pattern (never the raw path,
/// which would make one series per ID).
async fn observe(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    state.ctx.metrics.http_request(&method, &route, response.status().as_u16(), start.elapsed());
    response
}

async fn openapi(doc: Arc<utoipa::openapi::OpenApi>) -> impl IntoResponse {
    Json(doc.as_ref().clone())
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError(Error::NotFound(format!("no route {}", uri.path())))
}

/// A known path with a method it does not take: a JSON 405 (axum adds `Allow`).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> impl IntoResponse {
    let message = format!("{} does not take {method}", uri.path());
    let body = ErrorBody { error: ErrorDetail { code: "method_not_allowed".into(), message, field: None } };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, Json(body))
}
