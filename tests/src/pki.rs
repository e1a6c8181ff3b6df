//! Certificates for tests: a CA of the kit's own, which issues member
//! certificates as files (the way cert-manager delivers them) for clusters
//! without a manager, and which also plays the stranger's CA in attack
//! tests; and join tokens from a real manager ([`Join`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use darter_common::tls::certificate;
use darter_common::tls::{Credentials, Identity, Material, Role, Transport};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The cluster the kit's certificates name unless a test says otherwise.
pub const CLUSTER: u64 = 1;

/// A CA in process.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

fn at(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(secs as i64).expect("a representable time")
}

impl TestCa {
    /// A new CA (ECDSA P-256).
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        // A name of its own: two kit CAs are strangers, as two real CAs are
        // (a verifier that finds an issuer by name would otherwise take one
        // for the other and fail on the signature instead).
        dn.push(DnType::CommonName, format!("testkit CA {:016x}", rand::random::<u64>()));
        params.distinguished_name = dn;
        params.not_before = at(SystemTime::now() - Duration::from_secs(3600));
        params.not_after = at(SystemTime::now() + Duration::from_secs(24 * 3600));
        let cert = params.self_signed(&key).expect("a CA certificate");
        let ca_pem = cert.pem();
        TestCa { issuer: Issuer::new(params, key), ca_pem }
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA certificate and its key into `dir` (`ca.crt`,
    /// `ca.key`) and returns the environment that makes a manager sign with
    /// them, so the kit can issue what that manager would not (an expired
    /// certificate of its cluster).
    pub fn write_ca(&self, dir: &Path) -> Vec<(String, String)> {
        std::fs::create_dir_all(dir).expect("the CA directory");
        let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        std::fs::write(&cert, &self.ca_pem).expect("the CA certificate file");
        std::fs::write(&key, self.issuer.key().serialize_pem()).expect("the CA key file");
        vec![
            ("MANAGER__TLS__CA_CERT_FILE".into(), cert.display().to_string()),
            ("MANAGER__TLS__CA_KEY_FILE".into(), key.display().to_string()),
        ]
    }

    /// A certificate for `identity` valid from `not_before` to `not_after`:
    /// (certificate PEM, key PEM).
    pub fn issue_between(
        &self,
        identity: &Identity,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::default();
        params.not_before = at(not_before);
        params.not_after = at(not_after);
        let uri = rcgen::string::Ia5String::try_from(identity.to_uri()).expect("an ASCII identity");
        params.subject_alt_names = vec![SanType::URI(uri)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.host.clone());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A certificate for `identity`, valid for a day.
    pub fn issue(&self, identity: &Identity) -> (String, String) {
        let now = SystemTime::now();
        self.issue_between(identity, now - Duration::from_secs(60), now + Duration::from_secs(24 * 3600))
    }

    /// `identity`'s credentials, for a client or server in the test process.
    pub fn transport(&self, identity: &Identity) -> Transport {
        let (cert, key) = self.issue(identity);
        let material = Material::new(
            certificate::certs_from_pem(cert.as_bytes()).expect("the certificate"),
            certificate::key_from_pem(key.as_bytes()).expect("the key"),
            certificate::certs_from_pem(self.ca_pem.as_bytes()).expect("the CA"),
        )
        .expect("consistent material");
        Transport::Mtls(Credentials::new(material))
    }

    /// Writes `identity`'s certificate, key and this CA into `dir`.
    pub fn write(&self, dir: &Path, identity: &Identity) -> TlsFiles {
        let (cert, key) = self.issue(identity);
        TlsFiles::write(dir, &cert, &key, &self.ca_pem)
    }
}

/// A member's certificate files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA bundle.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// Writes the three PEM texts under `dir/tls-files/`.
    pub fn write(dir: &Path, cert: &str, key: &str, ca: &str) -> Self {
        let d = dir.join("tls-files");
        std::fs::create_dir_all(&d).expect("the TLS directory");
        let files = TlsFiles { cert: d.join("member.crt"), key: d.join("member.key"), ca: d.join("ca.crt") };
        std::fs::write(&files.cert, cert).expect("the certificate file");
        std::fs::write(&files.key, key).expect("the key file");
        std::fs::write(&files.ca, ca).expect("the CA file");
        files
    }

    /// The environment that points a member (`SCHEDULER`, `DFDAEMON`) at the files.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}__TLS__CERT_FILE"), self.cert.display().to_string()),
            (format!("{prefix}__TLS__KEY_FILE"), self.key.display().to_string()),
            (format!("{prefix}__TLS__CA_FILE"), self.ca.display().to_string()),
        ]
    }
}

/// A join token from a manager and the pin of its CA.
#[derive(Debug, Clone)]
pub struct Join {
    /// `<id>.<secret>`.
    pub token: String,
    /// `sha256:<hex>`.
    pub ca_cert_hash: String,
}

impl Join {
    /// The environment that makes a member (`SCHEDULER`, `DFDAEMON`) enroll with it.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}__TLS__JOIN_TOKEN"), self.token.clone()),
            (format!("{prefix}__TLS__CA_CERT_HASH"), self.ca_cert_hash.clone()),
        ]
    }
}

/// The environment that runs a member (`SCHEDULER`, `DFDAEMON`) in plaintext
/// (development) mode: for a member against an in-process fake.
pub fn plaintext_env(prefix: &str) -> Vec<(String, String)> {
    vec![(format!("{prefix}__TLS__MODE"), "plaintext".into())]
}

/// An identity of the kit's cluster.
pub fn identity(role: Role, host: &str) -> Identity {
    Identity::new(role, CLUSTER, host).expect("a valid host name")
}
