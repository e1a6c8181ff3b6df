//! Request extractors whose rejections are API errors naming the field:
//! [`Body`] (JSON), [`Id`] (a numeric path ID), [`Params`] (query string),
//! and the authenticated [`Caller`].

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::error::Error;

/// The body limit when the server put none on the request (the default of
/// `rest.max_body_size`).
const DEFAULT_BODY_LIMIT: u64 = 64 * 1024;

/// The largest body the server takes (`rest.max_body_size`), put on each
/// request by [`super::server`], which also has axum enforce it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub u64);

/// A JSON body; a malformed one is a 400 naming the field that did not fit
/// (`scopes.cidrs[0]`, `config.load_limit`), or `body` when the JSON itself
/// is broken; one larger than the server takes is a 413, refused before it is
/// read when its `Content-Length` says so.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Error::TooLarge { limit }.into());
        }
        let is_json =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(Error::invalid("body", "send JSON with Content-Type: application/json").into());
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge { limit }
            } else {
                Error::invalid("body", format!("cannot read the body: {e}"))
            }
        })?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
            return Err(Error::TooLarge { limit }.into());
        }
        parse_json(&bytes).map(Body).map_err(ApiError)
    }
}

/// Parses JSON, naming the path to the first field that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        Error::invalid(field_at(&path, &message, "body"), message)
    })?;
    de.end().map_err(|e| Error::invalid("body", e.to_string()))?;
    Ok(value)
}

/// The field a deserialization error is about: its path, with the name of a
/// missing field appended (serde reports those at the enclosing object), or
/// `whole` (`body`, `query`) when the error is about the input as a whole.
fn field_at(path: &str, message: &str, whole: &str) -> String {
    let missing = message.strip_prefix("missing field `").and_then(|m| m.split_once('`')).map(|(name, _)| name);
    match (matches!(path, "." | "?" | ""), missing) {
        (true, Some(name)) => name.to_owned(),
        (true, None) => whole.to_owned(),
        (false, Some(name)) => format!("{path}.{name}"),
        (false, None) => path.to_owned(),
    }
}

/// A numeric ID from the path (`/clusters/{id}`); anything else is a 400 on `id`.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid("id", e.body_text()))?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Id(id)),
            _ => Err(Error::invalid("id", format!("{raw:?} is not an ID (a positive integer)")).into()),
        }
    }
}

/// Query parameters; a bad one is a 400 naming it.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(Params).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            ApiError(Error::invalid(field_at(&path, &message, "query"), message))
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| Error::Unauthenticated("sign in first: send Authorization: Bearer <token>".into()))?;
        let value = header.to_str().map_err(|_| Error::Unauthenticated("unreadable Authorization header".into()))?;
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthenticated("expected Authorization: Bearer <token>".into()))?;
        Ok(state.auth.authenticate(token).await?)
    }
}
