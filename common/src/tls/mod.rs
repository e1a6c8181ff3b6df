//! Trust between members (ARCHITECTURE.md §7): every control connection
//! (gRPC between manager, schedulers, seed peers and peers) is TLS with
//! mutual authentication, and a member's certificate names what it is.
//!
//! - [`identity`]: [`Role`] and [`Identity`] (role, cluster, host) and their
//!   URI form in certificates;
//! - [`certificate`]: what Darter reads from a certificate (identity, serial,
//!   validity), CA pins, PEM;
//! - [`credentials`]: a member's live certificate, key, CA and revocations,
//!   from files (reloaded when they change) or from enrollment;
//! - [`verify`]: the handshake checks on both sides ([`Expect`]);
//! - [`incoming`]: a server's accepted connections, with the caller's
//!   [`Peer`] in every request;
//! - [`connect`]: a client channel that dials TLS;
//! - [`authz`]: [`authz::require`] a role (and cluster) of the caller;
//! - [`grant`]: piece grants, signed by a scheduler and checked by parents;
//! - [`enroll`]: a member's enrollment with a join token, renewal before
//!   expiry, and the manager's trust bundle (revocations);
//! - [`config`]: the `tls` section shared by scheduler and dfdaemon.

pub mod authz;
pub mod certificate;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod enroll;
pub mod grant;
pub mod identity;
pub mod incoming;
pub mod verify;

use std::sync::Arc;

pub use config::{TlsConfig, TlsMode};
pub use credentials::{Credentials, FileSource, Material};
pub use identity::{Identity, Role};
pub use incoming::{ConnectionLimits, Peer};
pub use verify::Expect;

/// The crypto provider of every TLS config Darter builds (ring).
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

const ALPN_H2: &[u8] = b"h2";

/// The protocol versions of encrypted piece connections.
const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The ALPN protocol of an encrypted piece connection, so it is never taken
/// for a gRPC one.
pub const ALPN_PIECES: &[u8] = b"darter-pieces/1";

/// The provider of encrypted piece connections: AES-128-GCM preferred. They
/// carry bulk data that is verified by digest anyway, and AES-128 costs
/// about a quarter less per byte than AES-256 (both are TLS 1.3 suites).
pub(crate) fn bulk_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = provider();
    provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// How a member talks on its control connections: mutual TLS with its
/// credentials, or plaintext (development only, never the default).
#[derive(Debug, Clone)]
pub enum Transport {
    /// No TLS, no authentication: anyone who reaches a port may call it.
    Plaintext,
    /// Mutual TLS.
    Mtls(Arc<Credentials>),
}

/// Whether a server demands a client certificate in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client presents a certificate of the cluster's CA.
    Required,
    /// A client may come without one (the manager, for enrollment); each
    /// call then decides ([`authz::require`]).
    Optional,
}

impl Transport {
    /// The member's own identity (`None` in plaintext mode).
    pub fn identity(&self) -> Option<Identity> {
        match self {
            Transport::Plaintext => None,
            Transport::Mtls(c) => Some(c.identity()),
        }
    }

    /// The member's credentials (`None` in plaintext mode).
    pub fn credentials(&self) -> Option<&Arc<Credentials>> {
        match self {
            Transport::Plaintext => None,
            Transport::Mtls(c) => Some(c),
        }
    }

    /// The rustls server config for a gRPC server (`None`: plaintext).
    pub fn server_config(&self, client_auth: ClientAuth) -> Option<Arc<rustls::ServerConfig>> {
        self.server_config_with(provider(), rustls::DEFAULT_VERSIONS, client_auth, ALPN_H2).map(Arc::new)
    }

    /// The rustls server config of a piece server (`upload.encrypt`): client
    /// certificates required, [`ALPN_PIECES`], [`bulk_provider`] (`None`:
    /// plaintext). dfdaemon seals and opens the records itself after the
    /// handshake (its `piece_wire`), so: TLS 1.3 only, secret extraction
    /// on, no session tickets.
    pub fn piece_server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        let mut config = self.server_config_with(bulk_provider(), TLS13_ONLY, ClientAuth::Required, ALPN_PIECES)?;
        config.enable_secret_extraction = true;
        config.send_tls13_tickets = 0;
        Some(Arc::new(config))
    }

    fn server_config_with(
        &self,
        provider: rustls::crypto::CryptoProvider,
        versions: &[&'static rustls::SupportedProtocolVersion],
        client_auth: ClientAuth,
        alpn: &[u8],
    ) -> Option<rustls::ServerConfig> {
        let credentials = self.credentials()?;
        let verifier = Arc::new(verify::MemberClients {
            credentials: credentials.clone(),
            optional: client_auth == ClientAuth::Optional,
        });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(OwnCertificate(credentials.clone())));
        config.alpn_protocols = vec![alpn.to_vec()];
        Some(config)
    }

    /// The rustls client config for dialing a server that must satisfy
    /// `expect` (`None`: plaintext).
    pub fn client_config(&self, expect: Expect) -> Option<Arc<rustls::ClientConfig>> {
        let credentials = self.credentials()?;
        let verifier = verify::ExpectedServer { anchor: verify::Anchor::Member(credentials.clone()), expect };
        Some(Arc::new(client_config(
            provider(),
            rustls::DEFAULT_VERSIONS,
            Arc::new(verifier),
            Some(credentials.clone()),
            ALPN_H2,
        )))
    }

    /// The rustls client config for an encrypted piece server, which must
    /// satisfy `expect` ([`ALPN_PIECES`], [`bulk_provider`]; `None`:
    /// plaintext). As on the server: TLS 1.3 only, secret extraction on,
    /// no resumption.
    pub fn piece_client_config(&self, expect: Expect) -> Option<Arc<rustls::ClientConfig>> {
        let credentials = self.credentials()?;
        let verifier = verify::ExpectedServer { anchor: verify::Anchor::Member(credentials.clone()), expect };
        let mut config =
            client_config(bulk_provider(), TLS13_ONLY, Arc::new(verifier), Some(credentials.clone()), ALPN_PIECES);
        config.enable_secret_extraction = true;
        config.resumption = rustls::client::Resumption::disabled();
        Some(Arc::new(config))
    }

    /// A lazy gRPC channel over `endpoint`, whose server must satisfy `expect`.
    pub fn channel(&self, endpoint: tonic::transport::Endpoint, expect: Expect) -> tonic::transport::Channel {
        connect::lazy(endpoint, self.client_config(expect))
    }
}

fn client_config(
    provider: rustls::crypto::CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    own: Option<Arc<Credentials>>,
    alpn: &[u8],
) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match own {
        Some(c) => builder.with_client_cert_resolver(Arc::new(OwnCertificate(c))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// A client config for the first contact with the manager, before the
/// member has a certificate: none is presented, and the manager is
/// recognised by its CA's pin or a CA file.
pub fn first_contact_config(manager_ca: &config::ManagerCa) -> Result<Arc<rustls::ClientConfig>, String> {
    let anchor = match manager_ca {
        config::ManagerCa::Pin(pin) => verify::Anchor::Pin(pin.clone()),
        config::ManagerCa::File(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certificate::certs_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))? {
                roots.add(c).map_err(|e| format!("{}: bad CA certificate: {e}", path.display()))?;
            }
            verify::Anchor::Roots(Arc::new(roots))
        }
    };
    let verifier = verify::ExpectedServer { anchor, expect: Expect::manager() };
    Ok(Arc::new(client_config(provider(), rustls::DEFAULT_VERSIONS, Arc::new(verifier), None, ALPN_H2)))
}

/// Presents the member's current certificate, on both sides.
#[derive(Debug)]
struct OwnCertificate(Arc<Credentials>);

impl rustls::server::ResolvesServerCert for OwnCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.material().certified.clone())
    }
}

impl rustls::client::ResolvesClientCert for OwnCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.material().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Limits every Darter gRPC server applies, whatever it serves.
pub mod limits {
    use std::time::Duration;

    /// Largest gRPC message a server decodes (a scheduler's piece reports
    /// and a manager's cluster answers stay far below).
    pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
    /// Streams at once on one HTTP/2 connection.
    pub const MAX_CONCURRENT_STREAMS: u32 = 256;
    /// Largest request header block.
    pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
    /// HTTP/2 pings on idle connections, so a vanished peer is noticed.
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
    /// A ping not answered within this closes the connection.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
}

/// A tonic server builder with the [`limits`] applied.
pub fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(limits::KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(limits::MAX_CONCURRENT_STREAMS))
        .http2_max_header_list_size(Some(limits::MAX_HEADER_LIST_SIZE))
}
