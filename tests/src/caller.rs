//! A caller of a Darter control port (gRPC) that is not what the server
//! wants: plaintext, TLS without a certificate, or TLS with any certificate
//! and key (another CA's, an expired one). It accepts whatever certificate
//! the server presents, as an attacker would, so what a test sees is the
//! server's refusal and not its own client's. Members with real credentials
//! dial with [`darter_common::tls::Transport::channel`] instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use darter_common::tls::{certificate, connect};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::Channel;

/// What the caller shows the server.
#[derive(Debug, Clone)]
pub enum Presents {
    /// No TLS at all (a client of the code before mutual TLS).
    Plaintext,
    /// TLS, no client certificate.
    NoCertificate,
    /// TLS with this certificate and key (PEM), whatever they are.
    Certificate {
        /// The certificate (chain).
        cert: String,
        /// Its key.
        key: String,
    },
}

impl Presents {
    /// A certificate and key as [`crate::pki::TestCa::issue`] gives them.
    pub fn certificate((cert, key): (String, String)) -> Self {
        Presents::Certificate { cert, key }
    }
}

/// How long a call through [`channel`] may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A lazy gRPC channel to `addr` presenting `presents`.
pub fn channel(addr: SocketAddr, presents: &Presents) -> Channel {
    let endpoint = connect::endpoint(&addr.to_string())
        .expect("a socket address is an endpoint")
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT);
    connect::lazy(endpoint, tls_config(presents, b"h2"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client config presenting `presents` that accepts any server and
/// offers the ALPN protocol `alpn` (`None` for plaintext).
pub fn tls_config(presents: &Presents, alpn: &[u8]) -> Option<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
    let mut config = match presents {
        Presents::Plaintext => return None,
        Presents::NoCertificate => builder.with_no_client_auth(),
        Presents::Certificate { cert, key } => builder
            .with_client_auth_cert(
                certificate::certs_from_pem(cert.as_bytes()).expect("the certificate"),
                certificate::key_from_pem(key.as_bytes()).expect("the key"),
            )
            .expect("a key that fits the certificate"),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Some(Arc::new(config))
}

/// Accepts any server certificate (checking only that the handshake is
/// signed by its key).
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// A refusal as the caller sees it: the status code, its message and every
/// error under it (a TLS alert sits a few sources deep).
pub fn refusal(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}
