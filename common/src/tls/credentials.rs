//! A member's live TLS material: its certificate chain and key, the CA it
//! trusts, and the serials the manager revoked. Servers and clients read the
//! current [`Material`] at every handshake, so a renewed certificate, a
//! reloaded file or a new revocation takes effect at the next connection
//! without a restart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use super::certificate::{self, Facts};
use super::identity::Identity;

/// One consistent set of certificate, key and CA.
pub struct Material {
    /// The member's certificate (first) and any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The CA certificates it trusts.
    pub ca: Vec<CertificateDer<'static>>,
    /// What its own certificate says.
    pub facts: Facts,
    pub(super) certified: Arc<CertifiedKey>,
    pub(super) roots: Arc<RootCertStore>,
    pub(super) client_verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material").field("facts", &self.facts).finish_non_exhaustive()
    }
}

impl Material {
    /// Checks and assembles a chain, its key and the CA: the key must match
    /// the certificate, the certificate must name a Darter identity, be valid
    /// now, and chain to one of `ca`.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: Vec<CertificateDer<'static>>,
    ) -> Result<Self, String> {
        let leaf = chain.first().ok_or("the certificate file holds no certificate")?;
        let facts = Facts::parse(leaf)?;
        let provider = super::provider();
        let certified = CertifiedKey::from_der(chain.clone(), key, &provider)
            .map_err(|e| format!("the private key does not belong to the certificate: {e}"))?;
        let mut roots = RootCertStore::empty();
        for c in &ca {
            roots.add(c.clone()).map_err(|e| format!("bad CA certificate: {e}"))?;
        }
        let roots = Arc::new(roots);
        super::verify::chain_to_roots(leaf, &chain[1..], &roots)
            .map_err(|e| format!("the certificate ({}) is not valid under the CA: {e}", facts.identity))?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), Arc::new(provider))
            .build()
            .map_err(|e| format!("cannot verify clients with this CA: {e}"))?;
        Ok(Material { chain, ca, facts, certified: Arc::new(certified), roots, client_verifier })
    }

    /// Reads PEM files: the certificate chain, its key and the CA bundle.
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let chain = certificate::certs_from_pem(&read(cert)?).map_err(|e| format!("{}: {e}", cert.display()))?;
        let key = certificate::key_from_pem(&read(key)?).map_err(|e| format!("{}: {e}", key.display()))?;
        let ca = certificate::certs_from_pem(&read(ca)?).map_err(|e| format!("{}: {e}", ca.display()))?;
        Material::new(chain, key, ca)
    }

    /// The certificate's identity.
    pub fn identity(&self) -> &Identity {
        &self.facts.identity
    }
}

/// The live material of one member, shared by its servers and clients.
#[derive(Debug)]
pub struct Credentials {
    material: RwLock<Arc<Material>>,
    revoked: RwLock<Arc<HashSet<String>>>,
}

impl Credentials {
    /// Credentials that start with `material` and nothing revoked.
    pub fn new(material: Material) -> Arc<Self> {
        Arc::new(Credentials { material: RwLock::new(Arc::new(material)), revoked: RwLock::default() })
    }

    /// The current material.
    pub fn material(&self) -> Arc<Material> {
        self.material.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Swaps in new material (a renewed or reloaded certificate). The
    /// identity may not change: a member is one identity for its life.
    pub fn replace(&self, material: Material) -> Result<(), String> {
        let current = self.material();
        if material.facts.identity != current.facts.identity {
            return Err(format!(
                "the new certificate names {} but this process runs as {}",
                material.facts.identity, current.facts.identity
            ));
        }
        *self.material.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(material);
        Ok(())
    }

    /// This member's identity.
    pub fn identity(&self) -> Identity {
        self.material().facts.identity.clone()
    }

    /// Replaces the set of revoked serials (from the manager's trust bundle).
    pub fn set_revoked(&self, serials: HashSet<String>) {
        *self.revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(serials);
    }

    /// Whether the manager revoked the certificate with this serial.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(serial)
    }
}

/// Certificates from files (as cert-manager delivers them), reloaded when
/// any of the three files changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA bundle (PEM).
    pub ca: PathBuf,
}

impl FileSource {
    /// Loads the files.
    pub fn load(&self) -> Result<Material, String> {
        Material::from_files(&self.cert, &self.key, &self.ca)
    }

    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        [&self.cert, &self.key, &self.ca]
            .iter()
            .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
            .collect()
    }

    /// Watches the files every `interval` until `stop`; a change that loads
    /// cleanly replaces `credentials`' material, one that does not is logged
    /// and the old material stays (a half-written rotation is retried).
    pub async fn watch(
        self,
        credentials: Arc<Credentials>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut seen = self.stamp();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let now = self.stamp();
            if now == seen {
                continue;
            }
            match self.load().and_then(|m| credentials.replace(m)) {
                Ok(()) => {
                    seen = now;
                    let m = credentials.material();
                    tracing::info!(identity = %m.facts.identity, serial = %m.facts.serial, "reloaded the TLS certificate from its files");
                }
                Err(e) => {
                    tracing::warn!(error = %e, cert = %self.cert.display(), "cannot reload the TLS certificate; keeping the current one")
                }
            }
        }
    }
}
