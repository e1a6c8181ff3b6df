//! TLS interception for `CONNECT`, only when `proxy.ca_cert` and `proxy.ca_key`
//! are configured: the proxy answers the tunnel's TLS handshake itself with a
//! leaf certificate for the requested host, signed by that CA (generated once
//! per host and cached), and serves the decrypted HTTP/1.1 requests like
//! forward-proxy requests to `https://host:port`, so the P2P rules apply to
//! HTTPS registries too. Clients must trust the CA. Without a CA, `CONNECT`
//! stays a blind tunnel.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Most leaf configs cached; more start the cache over.
const CACHE_LIMIT: usize = 4096;

/// Issues and caches per-host server configs.
pub struct Interceptor {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    cache: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor").finish_non_exhaustive()
    }
}

impl Interceptor {
    /// Loads the CA; the error names the file and what is wrong.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let cert_pem =
            std::fs::read_to_string(cert).map_err(|e| format!("proxy.ca_cert: cannot read {}: {e}", cert.display()))?;
        let key_pem =
            std::fs::read_to_string(key).map_err(|e| format!("proxy.ca_key: cannot read {}: {e}", key.display()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("proxy.ca_key: {}: {e}", key.display()))?;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("proxy.ca_cert: {}: {e}", cert.display()))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| format!("proxy.ca_cert: {}: {e}", cert.display()))?;
        Ok(Self { issuer, ca_der: der, cache: Mutex::new(HashMap::new()) })
    }

    /// The server config presenting a certificate for `host` (a name or an IP).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if let Some(c) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&host) {
            return Ok(c.clone());
        }
        let config = Arc::new(self.issue(&host)?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(host, config.clone());
        Ok(config)
    }

    fn issue(&self, host: &str) -> Result<ServerConfig, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(|e| format!("{host:?}: {e}"))?),
        }];
        params.distinguished_name.push(DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let leaf = params.signed_by(&key, &self.issuer).map_err(|e| e.to_string())?;
        let chain = vec![leaf.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("leaf certificate for {host}: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
