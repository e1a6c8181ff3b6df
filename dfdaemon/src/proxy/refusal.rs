//! Why the proxy answers with an error of its own instead of an upstream's or
//! the swarm's response, and the one place that becomes an HTTP response: a
//! status and a short code per case, in the registry API's JSON for mirror
//! requests (`{"errors": [{"code": ...}]}`, which containerd logs) and in a
//! text line for proxy requests.

use http::{Response, StatusCode, header};

use super::destination::GuardError;
use super::path::PathError;
use super::target::{Mode, TargetError};
use super::{ProxyBody, full};

/// An error answer of the proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The target is malformed or not allowed ([`TargetError`]).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The request path has a dot segment or an encoded separator.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The destination is internal and not allow-listed (403), or its name
    /// does not resolve (502).
    #[error(transparent)]
    Destination(#[from] GuardError),
    /// A `CONNECT` to a port outside `proxy.connect_ports`.
    #[error("CONNECT to port {port} is not allowed (proxy.connect_ports: {allowed:?})")]
    ConnectPort {
        /// The port asked for.
        port: u16,
        /// `proxy.connect_ports`.
        allowed: Vec<u16>,
    },
    /// The request head is larger than `proxy.max_header_bytes`.
    #[error("request head of {size} bytes exceeds proxy.max_header_bytes ({limit})")]
    HeadTooLarge {
        /// Bytes of the request line and headers.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A registry blob path whose digest is malformed (its last segment).
    #[error("invalid blob digest {0:?}")]
    DigestInvalid(String),
    /// The upstream (or a `CONNECT` target) failed or refused the connection.
    #[error("{0}")]
    Upstream(String),
    /// A `CONNECT` target did not accept the connection in time.
    #[error("{0}: timeout")]
    UpstreamTimeout(String),
    /// No certificate could be made to intercept a `CONNECT`.
    #[error("cannot intercept TLS: {0}")]
    Intercept(String),
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Target(TargetError::Bad(_)) | Self::DigestInvalid(_) | Self::Path(_) => StatusCode::BAD_REQUEST,
            Self::Target(TargetError::NotAllowed(_))
            | Self::Destination(GuardError::Refused { .. })
            | Self::ConnectPort { .. } => StatusCode::FORBIDDEN,
            Self::Destination(GuardError::Unresolved { .. }) => StatusCode::BAD_GATEWAY,
            Self::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Upstream(_) | Self::Intercept(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The short code: the registry API's where one fits (`DENIED`,
    /// `DIGEST_INVALID`, `UNSUPPORTED` for an invalid set of parameters),
    /// else one of ours in the same style.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Target(TargetError::Bad(_)) => "UNSUPPORTED",
            Self::Target(TargetError::NotAllowed(_)) => "DENIED",
            Self::Path(_) => "PATH_INVALID",
            Self::Destination(GuardError::Refused { .. }) => "DESTINATION_DENIED",
            Self::Destination(GuardError::Unresolved { .. }) => "UNRESOLVED",
            Self::ConnectPort { .. } => "PORT_DENIED",
            Self::HeadTooLarge { .. } => "HEADERS_TOO_LARGE",
            Self::DigestInvalid(_) => "DIGEST_INVALID",
            Self::Upstream(_) => "UNAVAILABLE",
            Self::UpstreamTimeout(_) => "UPSTREAM_TIMEOUT",
            Self::Intercept(_) => "INTERCEPT_FAILED",
        }
    }

    /// The response for a request that reached the proxy as `mode`.
    pub fn response(&self, mode: Mode) -> Response<ProxyBody> {
        let (code, message) = (self.code(), self.to_string());
        let (content_type, body) = match mode {
            Mode::Mirror => (
                "application/json",
                serde_json::json!({"errors": [{"code": code, "message": message, "detail": "darter dfdaemon proxy"}]})
                    .to_string(),
            ),
            Mode::Forward => ("text/plain; charset=utf-8", format!("darter proxy: {code}: {message}\n")),
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        resp
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    fn every_case() -> Vec<Refusal> {
        vec![
            Refusal::Target(TargetError::Bad("/etc/passwd is not a registry path".into())),
            Refusal::Target(TargetError::NotAllowed("registry.invalid".into())),
            Refusal::Path(PathError::DotSegment("..".into())),
            Refusal::Destination(GuardError::Refused {
                destination: "localhost:80".into(),
                addr: [127, 0, 0, 1].into(),
                class: super::super::ip_class::AddrClass::Loopback,
                named: true,
            }),
            Refusal::Destination(GuardError::Unresolved { host: "x.invalid".into(), reason: "no address".into() }),
            Refusal::ConnectPort { port: 22, allowed: vec![443] },
            Refusal::HeadTooLarge { size: 70_000, limit: 65_536 },
            Refusal::DigestInvalid("sha256:zz".into()),
            Refusal::Upstream("127.0.0.1:9: connection refused".into()),
            Refusal::UpstreamTimeout("10.0.0.1:443".into()),
            Refusal::Intercept("bad key".into()),
        ]
    }

    #[test]
    fn each_case_has_its_status_and_its_own_code() {
        let got: Vec<(u16, &str)> = every_case().iter().map(|r| (r.status().as_u16(), r.code())).collect();
        assert_eq!(
            got,
            [
                (400, "UNSUPPORTED"),
                (403, "DENIED"),
                (400, "PATH_INVALID"),
                (403, "DESTINATION_DENIED"),
                (502, "UNRESOLVED"),
                (403, "PORT_DENIED"),
                (431, "HEADERS_TOO_LARGE"),
                (400, "DIGEST_INVALID"),
                (502, "UNAVAILABLE"),
                (504, "UPSTREAM_TIMEOUT"),
                (502, "INTERCEPT_FAILED"),
            ]
        );
        let codes: std::collections::HashSet<&str> = got.iter().map(|(_, c)| *c).collect();
        assert_eq!(codes.len(), got.len(), "two cases share a code");
    }

    async fn body(resp: Response<ProxyBody>) -> (u16, String, String) {
        let status = resp.status().as_u16();
        let content_type = resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn mirror_requests_get_registry_json_and_proxy_requests_a_line_of_text() {
        let refusal = Refusal::Target(TargetError::NotAllowed("registry.invalid".into()));
        let (status, content_type, text) = body(refusal.response(Mode::Mirror)).await;
        assert_eq!((status, content_type.as_str()), (403, "application/json"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["errors"][0]["code"], "DENIED");
        assert_eq!(json["errors"][0]["message"], "registry.invalid is not an allowed upstream (proxy.allowed_hosts)");

        let refusal = Refusal::HeadTooLarge { size: 70_000, limit: 65_536 };
        let (status, content_type, text) = body(refusal.response(Mode::Forward)).await;
        assert_eq!((status, content_type.as_str()), (431, "text/plain; charset=utf-8"));
        assert_eq!(
            text,
            "darter proxy: HEADERS_TOO_LARGE: request head of 70000 bytes exceeds proxy.max_header_bytes (65536)\n"
        );
    }

    #[test]
    fn target_errors_keep_their_message() {
        let r = Refusal::from(TargetError::Bad("ns \"x y\" is not a registry host".into()));
        assert_eq!(r.to_string(), "ns \"x y\" is not a registry host");
    }
}
