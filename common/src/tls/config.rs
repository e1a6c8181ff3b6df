//! The `tls` section of the scheduler's and dfdaemon's configs: where a
//! member's certificate comes from.
//!
//! ```yaml
//! tls:
//!   mode: mtls            # or plaintext: development only, nothing is authenticated
//!   # Certificates from files (cert-manager): all three, reloaded when they change.
//!   cert_file: null
//!   key_file: null
//!   ca_file: null
//!   reload_interval: 10s
//!   # Or enrollment with the manager (its console or POST /api/v1/join-tokens):
//!   join_token: null      # "<id>.<secret>"; or join_token_file
//!   join_token_file: null
//!   ca_cert_hash: null    # "sha256:<hex>": pins the manager's CA on first contact (or ca_file)
//!   state_dir: null       # where an enrolled certificate is kept
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::FieldError;
use crate::units::duration;

/// Plaintext or mutual TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Mutual TLS on every control connection (the default).
    #[default]
    Mtls,
    /// No TLS and no authentication, for development on a trusted machine.
    Plaintext,
}

/// Where a member's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// `mtls` (default) or `plaintext` (development only).
    pub mode: TlsMode,
    /// The member's certificate chain (PEM), naming its identity as a
    /// `spiffe://darter/cluster/<id>/<role>/<host>` URI SAN.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The cluster's CA (PEM).
    pub ca_file: Option<PathBuf>,
    /// How often the three files are checked for changes.
    #[serde(with = "duration")]
    pub reload_interval: Duration,
    /// A join token from the manager, `<id>.<secret>`.
    pub join_token: Option<String>,
    /// A file holding the join token (a mounted Secret).
    pub join_token_file: Option<PathBuf>,
    /// The manager's CA pin, `sha256:<hex>`, given with the join token.
    pub ca_cert_hash: Option<String>,
    /// Where an enrolled certificate and its key are kept across restarts
    /// (made 0700, files 0600). dfdaemon: `<storage.data_dir>/tls` when unset;
    /// scheduler: unset keeps them in memory (it enrolls again at each start).
    pub state_dir: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            mode: TlsMode::Mtls,
            cert_file: None,
            key_file: None,
            ca_file: None,
            reload_interval: Duration::from_secs(10),
            join_token: None,
            join_token_file: None,
            ca_cert_hash: None,
            state_dir: None,
        }
    }
}

/// Where the certificate of an mTLS member comes from, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Files ([`super::FileSource`]).
    Files(super::FileSource),
    /// Enrollment with a join token.
    Enrollment {
        /// The token, `<id>.<secret>`.
        token: String,
        /// How the manager is recognised on first contact.
        manager_ca: ManagerCa,
    },
}

/// How an enrolling member recognises the manager before it has a
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerCa {
    /// By the pin of its CA.
    Pin(String),
    /// By a CA file.
    File(PathBuf),
}

const NEEDS_A_CERTIFICATE: &str = "a member needs a certificate: set cert_file, key_file and ca_file \
     (e.g. from cert-manager), or join_token (or join_token_file) with ca_cert_hash, from the manager's \
     console or POST /api/v1/join-tokens; or mode: plaintext for development (nothing is authenticated)";

impl TlsConfig {
    /// Checks the section (`section` names it in errors): partial
    /// certificate files, a malformed token or pin. Whether a certificate
    /// source is given at all is checked at start ([`TlsConfig::source`]),
    /// so a config can be printed and checked before it has one.
    pub fn validate(&self, section: &str) -> Result<(), FieldError> {
        match self.source(section) {
            Err(e) if e.field == section => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Where the certificate comes from (`None` in plaintext mode); an mTLS
    /// member without one is an error that says how to get one. Reads the
    /// token file.
    pub fn source(&self, section: &str) -> Result<Option<Source>, FieldError> {
        let field = |f: &str| format!("{section}.{f}");
        if self.mode == TlsMode::Plaintext {
            return Ok(None);
        }
        if self.reload_interval.is_zero() {
            return Err(FieldError::new(field("reload_interval"), "must be more than 0"));
        }
        let files = [("cert_file", &self.cert_file), ("key_file", &self.key_file), ("ca_file", &self.ca_file)];
        let token = self.token(section)?;
        if self.cert_file.is_some() || self.key_file.is_some() {
            if let Some((name, _)) = files.iter().find(|(_, v)| v.is_none()) {
                return Err(FieldError::new(field(name), "is needed with the other certificate files"));
            }
            if token.is_some() {
                return Err(FieldError::new(field("join_token"), "give either certificate files or a join token"));
            }
            let path = |p: &Option<PathBuf>| p.clone().unwrap_or_default();
            return Ok(Some(Source::Files(super::FileSource {
                cert: path(&self.cert_file),
                key: path(&self.key_file),
                ca: path(&self.ca_file),
            })));
        }
        let Some(token) = token else {
            return Err(FieldError::new(section, NEEDS_A_CERTIFICATE));
        };
        check_token_form(&token).map_err(|e| FieldError::new(field("join_token"), e))?;
        let manager_ca = match (&self.ca_cert_hash, &self.ca_file) {
            (Some(pin), _) => {
                super::certificate::check_pin(pin).map_err(|e| FieldError::new(field("ca_cert_hash"), e))?;
                ManagerCa::Pin(pin.clone())
            }
            (None, Some(file)) => ManagerCa::File(file.clone()),
            (None, None) => {
                return Err(FieldError::new(
                    field("ca_cert_hash"),
                    "is needed with a join token (the manager gives it with the token), or ca_file",
                ));
            }
        };
        Ok(Some(Source::Enrollment { token, manager_ca }))
    }

    fn token(&self, section: &str) -> Result<Option<String>, FieldError> {
        match (&self.join_token, &self.join_token_file) {
            (Some(_), Some(_)) => Err(FieldError::new(
                format!("{section}.join_token_file"),
                "give join_token or join_token_file, not both",
            )),
            (Some(t), None) => Ok(Some(t.trim().to_owned())),
            (None, Some(path)) => {
                read_token(path).map(Some).map_err(|e| FieldError::new(format!("{section}.join_token_file"), e))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The most a token file is read: a token is 23 to 71 bytes.
const MAX_TOKEN_FILE: u64 = 4096;

fn read_token(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut text = String::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_TOKEN_FILE).read_to_string(&mut text)).map_err(fail)?;
    Ok(text.trim().to_owned())
}

/// A join token is `<id>.<secret>`: 6 and 16 to 64 characters of `[a-z0-9]`.
pub fn check_token_form(token: &str) -> Result<(), String> {
    let ok = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match token.split_once('.') {
        Some((id, secret)) if ok(id, 6, 6) && ok(secret, 16, 64) => Ok(()),
        _ => Err("a join token looks like <6 characters>.<16 or more characters> of a-z and 0-9".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtls_without_a_certificate_source_says_how_to_get_one() {
        assert!(TlsConfig::default().validate("tls").is_ok(), "checked at start, not in the config");
        let e = TlsConfig::default().source("tls").unwrap_err();
        assert_eq!(e.field, "tls");
        assert!(e.message.contains("join_token") && e.message.contains("cert_file"), "{}", e.message);
        assert!(TlsConfig { mode: TlsMode::Plaintext, ..Default::default() }.validate("tls").is_ok());
    }

    #[test]
    fn partial_files_and_bad_tokens_are_named() {
        let c = TlsConfig { cert_file: Some("c".into()), ..Default::default() };
        assert_eq!(c.validate("tls").unwrap_err().field, "tls.key_file");
        let c = TlsConfig { join_token: Some("abc".into()), ..Default::default() };
        assert_eq!(c.validate("tls").unwrap_err().field, "tls.join_token");
        let c = TlsConfig { join_token: Some("abcdef.0123456789abcdef".into()), ..Default::default() };
        assert_eq!(c.validate("tls").unwrap_err().field, "tls.ca_cert_hash");
        let pin = format!("sha256:{}", "0".repeat(64));
        let c = TlsConfig {
            join_token: Some("abcdef.0123456789abcdef".into()),
            ca_cert_hash: Some(pin.clone()),
            ..Default::default()
        };
        assert_eq!(
            c.source("tls").unwrap(),
            Some(Source::Enrollment { token: "abcdef.0123456789abcdef".into(), manager_ca: ManagerCa::Pin(pin) })
        );
    }
}
