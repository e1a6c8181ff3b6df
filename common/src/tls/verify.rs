//! How members check each other in the TLS handshake: the certificate must
//! chain to the cluster's CA, name a Darter identity, not be revoked, and
//! (for the server a client dials) name the role and cluster the client
//! expects. Host names and addresses in certificates are not looked at; the
//! identity is the name ([`super::identity`]).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};

use super::certificate::{self, Facts};
use super::credentials::Credentials;
use super::identity::{Identity, Role};

/// Which servers a client accepts: one of `roles`, and of `cluster` when
/// given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Acceptable roles.
    pub roles: Vec<Role>,
    /// The cluster the server must belong to, if any.
    pub cluster: Option<u64>,
}

impl Expect {
    /// The manager (any cluster).
    pub fn manager() -> Self {
        Expect { roles: vec![Role::Manager], cluster: None }
    }

    /// A scheduler of `cluster`.
    pub fn scheduler(cluster: u64) -> Self {
        Expect { roles: vec![Role::Scheduler], cluster: Some(cluster) }
    }

    /// A seed peer of `cluster` (what a scheduler triggers).
    pub fn seed_peer(cluster: u64) -> Self {
        Expect { roles: vec![Role::SeedPeer], cluster: Some(cluster) }
    }

    /// A peer or seed peer of `cluster` (a parent).
    pub fn daemon(cluster: u64) -> Self {
        Expect { roles: vec![Role::Peer, Role::SeedPeer], cluster: Some(cluster) }
    }

    /// Whether `identity` is acceptable; the error says why not.
    pub fn check(&self, identity: &Identity) -> Result<(), String> {
        if !self.roles.contains(&identity.role) {
            let wanted: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
            return Err(format!("the server is {identity}, not a {}", wanted.join(" or ")));
        }
        match self.cluster {
            Some(c) if c != identity.cluster_id => Err(format!("the server is {identity}, not of cluster {c}")),
            _ => Ok(()),
        }
    }
}

/// Checks `leaf` (with `intermediates`) against `roots` now.
pub(super) fn chain_to_roots(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &RootCertStore,
) -> Result<(), Error> {
    let parsed = ParsedCertificate::try_from(leaf)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        intermediates,
        UnixTime::now(),
        super::provider().signature_verification_algorithms.all,
    )
}

fn other(msg: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(std::io::Error::other(msg)))))
}

fn facts_of(end_entity: &CertificateDer<'_>) -> Result<Facts, Error> {
    Facts::parse(end_entity).map_err(other)
}

macro_rules! signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &super::provider().signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &super::provider().signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            super::provider().signature_verification_algorithms.supported_schemes()
        }
    };
}

/// A server's check of its clients: the CA of the current material, then
/// identity and revocation. `optional`: a client without a certificate is let
/// through the handshake (the manager's enrollment); the service decides.
#[derive(Debug)]
pub(super) struct MemberClients {
    pub credentials: Arc<Credentials>,
    pub optional: bool,
}

impl ClientCertVerifier for MemberClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.optional
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let material = self.credentials.material();
        material.client_verifier.verify_client_cert(end_entity, intermediates, now)?;
        let facts = facts_of(end_entity)?;
        if self.credentials.is_revoked(&facts.serial) {
            return Err(Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    signatures_by_provider!();
}

/// Where a client's trust in a server comes from.
#[derive(Debug)]
pub(super) enum Anchor {
    /// The CA of the member's own material.
    Member(Arc<Credentials>),
    /// A CA the server sends, accepted when its public key has this pin
    /// (first contact with the manager, before the member has a certificate).
    Pin(String),
    /// A CA from a file (first contact, when the CA is handed out as a file).
    Roots(Arc<RootCertStore>),
}

/// A client's check of the server it dialed.
#[derive(Debug)]
pub(super) struct ExpectedServer {
    pub anchor: Anchor,
    pub expect: Expect,
}

impl ServerCertVerifier for ExpectedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.anchor {
            Anchor::Member(credentials) => {
                chain_to_roots(end_entity, intermediates, &credentials.material().roots)?;
                let facts = facts_of(end_entity)?;
                if credentials.is_revoked(&facts.serial) {
                    return Err(Error::InvalidCertificate(CertificateError::Revoked));
                }
                self.expect.check(&facts.identity).map_err(other)?;
            }
            Anchor::Pin(pin) => {
                let ca = intermediates
                    .iter()
                    .find(|c| certificate::ca_pin(c).is_ok_and(|p| p == *pin))
                    .ok_or_else(|| other(format!("the server's CA does not match the pin {pin}")))?;
                let mut roots = RootCertStore::empty();
                roots.add(ca.clone().into_owned())?;
                chain_to_roots(end_entity, intermediates, &roots)?;
                self.expect.check(&facts_of(end_entity)?.identity).map_err(other)?;
            }
            Anchor::Roots(roots) => {
                chain_to_roots(end_entity, intermediates, roots)?;
                self.expect.check(&facts_of(end_entity)?.identity).map_err(other)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_provider!();
}
