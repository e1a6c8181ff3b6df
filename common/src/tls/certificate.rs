//! What Darter reads from a certificate: the holder's [`Identity`], the
//! serial number (what revocation names), the end of validity, and the CA
//! pin (`sha256:<hex>` of a certificate's public key, which a join token
//! carries so a member authenticates the manager on first contact, as
//! `kubeadm join --discovery-token-ca-cert-hash` does).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use super::identity::Identity;

/// What one certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Its holder.
    pub identity: Identity,
    /// Its serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// When it stops being valid.
    pub not_after: SystemTime,
    /// When it started being valid.
    pub not_before: SystemTime,
}

impl Facts {
    /// Parses a member certificate (DER).
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
        let sans = cert.subject_alternative_name().map_err(|e| format!("bad subject alternative names: {e}"))?;
        let uris: Vec<&str> = sans
            .iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .filter_map(|n| match n {
                GeneralName::URI(u) if u.starts_with("spiffe://darter/") => Some(*u),
                _ => None,
            })
            .collect();
        let identity = match uris.as_slice() {
            [uri] => Identity::from_uri(uri)?,
            [] => return Err("the certificate names no Darter identity (a spiffe://darter/... URI SAN)".into()),
            _ => return Err("the certificate names more than one Darter identity".into()),
        };
        let validity = cert.validity();
        Ok(Facts {
            identity,
            serial: serial_hex(cert.raw_serial()),
            not_after: to_system_time(validity.not_after.timestamp()),
            not_before: to_system_time(validity.not_before.timestamp()),
        })
    }
}

/// A serial number as Darter writes it: lower-case hex, leading zero bytes
/// dropped.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

fn to_system_time(unix: i64) -> SystemTime {
    if unix >= 0 { UNIX_EPOCH + Duration::from_secs(unix as u64) } else { UNIX_EPOCH }
}

/// The pin of a CA certificate: `sha256:` and the hex SHA-256 of its
/// SubjectPublicKeyInfo.
pub fn ca_pin(ca_der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(ca_der).map_err(|e| format!("not a certificate: {e}"))?;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(cert.public_key().raw))))
}

/// Checks the form of a pin (`sha256:` and 64 hex digits).
pub fn check_pin(pin: &str) -> Result<(), String> {
    match pin.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(format!("{pin:?} is not a CA pin (expected sha256: and 64 hex digits)")),
    }
}

/// Every certificate in a PEM text, in order.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// The one private key in a PEM text (PKCS#8, SEC1 or PKCS#1).
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key in it: {e}"))
}

/// PEM text of certificates.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| {
            let body = base64_lines(c.as_ref());
            format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
        })
        .collect()
}

fn base64_lines(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= chunk.len() { TABLE[((n >> shift) & 63) as usize] as char } else { '=' });
        }
    }
    let mut lines = String::new();
    for line in out.as_bytes().chunks(64) {
        lines.push_str(std::str::from_utf8(line).unwrap_or_default());
        lines.push('\n');
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_written_here_reads_back() {
        for len in [1usize, 2, 3, 47, 48, 49, 100] {
            let der = CertificateDer::from((0..len).map(|i| i as u8).collect::<Vec<_>>());
            let pem = certs_to_pem(std::slice::from_ref(&der));
            let back = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
            assert_eq!(back, vec![der], "{len}");
        }
    }

    #[test]
    fn serials_drop_leading_zero_bytes() {
        assert_eq!(serial_hex(&[0, 0, 0x1a, 0]), "1a00");
        assert_eq!(serial_hex(&[0]), "00");
    }

    #[test]
    fn pins_are_checked() {
        assert!(check_pin(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(check_pin("sha256:abc").is_err());
        assert!(check_pin(&"a".repeat(64)).is_err());
    }
}
