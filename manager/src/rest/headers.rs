//! The security headers every REST answer carries.
//!
//! The console ([`super::console`]) is three static files: the page loads
//! `app.js` and `style.css` from the manager itself, has no inline script or
//! style and no event-handler attributes, and talks only to the same origin.
//! So its policy allows exactly that ([`CONSOLE_CSP`]); a script injected into
//! the page through some future bug would not run, could not send data
//! elsewhere, and the page cannot be framed (clickjacking). Every other
//! answer is JSON and gets a policy allowing nothing ([`API_CSP`]).

use axum::http::HeaderValue;
use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::response::Response;

/// The console's policy: its own script, style and API only; the `data:`
/// image is the page's empty favicon.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                               connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The policy of every other answer: nothing.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the security headers to `response`; a `Content-Security-Policy` the
/// handler set (the console's) is kept.
pub fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.entry(CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(API_CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}
