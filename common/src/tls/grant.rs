//! Piece grants: a parent serves a piece only to a request that carries a
//! short-lived grant from a scheduler of its cluster, naming the task, the
//! parent and the child (ARCHITECTURE.md §7).
//!
//! The piece port speaks plain HTTP so that parents keep their zero-copy
//! `sendfile` path; the grant is what makes it a cluster's port rather than
//! anyone's. A scheduler signs each grant with the key of its TLS
//! certificate and sends it to the child over the mutually authenticated
//! announce stream; the child sends it in [`GRANT_HEADER`] with every piece
//! request. The parent checks, before it looks anything up:
//!
//! - the certificate in the grant chains to the cluster's CA, names a
//!   scheduler of the parent's own cluster and is not revoked;
//! - the signature over the grant is that certificate's key's;
//! - the grant names the task of the request and this parent's host ID;
//! - it has not expired (a minute's clock skew is tolerated).
//!
//! A verified grant is remembered by its hash, so the requests after the
//! first cost one SHA-256 and a map lookup.
//!
//! On the wire a grant is hex of: version (1 byte), signature scheme (2),
//! expiry in Unix seconds (8), the task ID, parent host ID and child host ID
//! (each a 2-byte length and UTF-8), the scheduler's certificate chain (a
//! 1-byte count, then each a 2-byte length and DER), then the signature (a
//! 2-byte length and bytes) over [`DOMAIN`] and everything before it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::SignatureScheme;
use rustls::pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};

use super::certificate::Facts;
use super::credentials::Credentials;
use super::identity::Role;

/// The request header that carries a grant.
pub const GRANT_HEADER: &str = "x-darter-grant";

/// How long a grant lasts unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// Clock difference between scheduler and parent that is tolerated.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Longest lifetime a parent accepts: a grant expiring later than this from
/// now is refused, whoever signed it.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Prefix of every signed message, so a grant signature is never valid as
/// anything else the key signs (TLS handshakes sign other prefixes).
pub const DOMAIN: &[u8] = b"darter piece grant v1\0";

const VERSION: u8 = 1;

/// Signature schemes a scheduler signs with, by the kind of its key.
const SCHEMES: [SignatureScheme; 4] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
];

/// Verified grants remembered by a parent.
const CACHE_ENTRIES: usize = 4096;

/// What a grant allows: `child_host_id` may fetch pieces of `task_id` from
/// `parent_host_id` until `expires_at` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The task.
    pub task_id: String,
    /// The host that serves.
    pub parent_host_id: String,
    /// The host that fetches.
    pub child_host_id: String,
    /// Unix seconds after which it is void.
    pub expires_at: u64,
}

/// Why a piece request's grant was refused (the parent answers 403 with
/// [`Refusal::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No grant on the request.
    #[error("no piece grant")]
    Missing,
    /// Not a grant.
    #[error("malformed piece grant: {0}")]
    Malformed(&'static str),
    /// Past its expiry, or expiring implausibly late.
    #[error("the piece grant expired or is not yet plausible")]
    Expired,
    /// For another task.
    #[error("the piece grant is for another task")]
    OtherTask,
    /// For another parent.
    #[error("the piece grant is for another parent")]
    OtherParent,
    /// Its certificate is not a scheduler of this cluster under this CA.
    #[error("the piece grant's signer is not accepted: {0}")]
    Signer(String),
    /// The signature does not match.
    #[error("the piece grant's signature does not verify")]
    Signature,
}

impl Refusal {
    /// A short reason for the response body (no detail an attacker could use).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "piece grant required",
            Refusal::Malformed(_) => "malformed piece grant",
            Refusal::Expired => "piece grant expired",
            Refusal::OtherTask | Refusal::OtherParent => "piece grant does not cover this request",
            Refusal::Signer(_) | Refusal::Signature => "piece grant not accepted",
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A scheduler's signer of grants, with the key of its current certificate.
#[derive(Debug, Clone)]
pub struct Issuer {
    credentials: Arc<Credentials>,
    ttl: Duration,
}

impl Issuer {
    /// Grants signed with `credentials`' key, valid for `ttl`.
    pub fn new(credentials: Arc<Credentials>, ttl: Duration) -> Self {
        Issuer { credentials, ttl }
    }

    /// A signed grant for `child_host_id` to fetch `task_id` from
    /// `parent_host_id`, encoded for [`GRANT_HEADER`].
    pub fn issue(&self, task_id: &str, parent_host_id: &str, child_host_id: &str) -> Result<String, String> {
        self.sign(&Grant {
            task_id: task_id.to_string(),
            parent_host_id: parent_host_id.to_string(),
            child_host_id: child_host_id.to_string(),
            expires_at: now_secs() + self.ttl.as_secs(),
        })
    }

    /// `grant`, signed and encoded.
    pub fn sign(&self, grant: &Grant) -> Result<String, String> {
        let material = self.credentials.material();
        let signer =
            material.certified.key.choose_scheme(&SCHEMES).ok_or("the scheduler's key cannot sign piece grants")?;
        let mut wire = Vec::with_capacity(1024);
        wire.push(VERSION);
        wire.extend_from_slice(&u16::from(signer.scheme()).to_be_bytes());
        wire.extend_from_slice(&grant.expires_at.to_be_bytes());
        for field in [&grant.task_id, &grant.parent_host_id, &grant.child_host_id] {
            put_bytes(&mut wire, field.as_bytes())?;
        }
        let chain = &material.chain;
        let count = u8::try_from(chain.len()).map_err(|_| "certificate chain too long")?;
        wire.push(count);
        for cert in chain {
            put_bytes(&mut wire, cert)?;
        }
        let signature = signer.sign(&signed_message(&wire)).map_err(|e| format!("cannot sign a piece grant: {e}"))?;
        put_bytes(&mut wire, &signature)?;
        Ok(hex::encode(wire))
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u16::try_from(bytes.len()).map_err(|_| "a piece grant field is too long".to_string())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    [DOMAIN, body].concat()
}

/// A grant as read off the wire, before any check.
#[derive(Debug)]
pub struct Decoded {
    /// What it grants.
    pub grant: Grant,
    scheme: SignatureScheme,
    chain: Vec<CertificateDer<'static>>,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

/// Reads a grant's fields from its header value (bytes from the network:
/// every length is checked against what is left).
pub fn decode(value: &str) -> Result<Decoded, Refusal> {
    let wire = hex::decode(value.trim()).map_err(|_| Refusal::Malformed("not hex"))?;
    let mut r = Reader { bytes: &wire, at: 0 };
    if r.take(1)? != [VERSION] {
        return Err(Refusal::Malformed("unknown version"));
    }
    let scheme = SignatureScheme::from(u16::from_be_bytes(r.array()?));
    let expires_at = u64::from_be_bytes(r.array()?);
    let mut text = || -> Result<String, Refusal> {
        String::from_utf8(r.field()?.to_vec()).map_err(|_| Refusal::Malformed("not UTF-8"))
    };
    let (task_id, parent_host_id, child_host_id) = (text()?, text()?, text()?);
    let count = r.take(1)?[0];
    let chain =
        (0..count).map(|_| Ok(CertificateDer::from(r.field()?.to_vec()))).collect::<Result<Vec<_>, Refusal>>()?;
    let signed = wire[..r.at].to_vec();
    let signature = r.field()?.to_vec();
    if r.at != wire.len() {
        return Err(Refusal::Malformed("trailing bytes"));
    }
    Ok(Decoded {
        grant: Grant { task_id, parent_host_id, child_host_id, expires_at },
        scheme,
        chain,
        signed,
        signature,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(Refusal::Malformed("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Refusal> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn field(&mut self) -> Result<&'a [u8], Refusal> {
        let len = u16::from_be_bytes(self.array()?);
        self.take(usize::from(len))
    }
}

/// A verified grant, remembered by the hash of its wire form.
#[derive(Debug, Clone)]
struct Remembered {
    grant: Grant,
    serial: String,
}

/// A parent's check of the grants on its piece requests.
#[derive(Debug)]
pub struct Checker {
    credentials: Arc<Credentials>,
    host_id: String,
    verified: Mutex<HashMap<[u8; 32], Remembered>>,
}

impl Checker {
    /// Checks grants for the parent `host_id` under `credentials`' CA and
    /// cluster (and its revocations).
    pub fn new(credentials: Arc<Credentials>, host_id: impl Into<String>) -> Self {
        Checker { credentials, host_id: host_id.into(), verified: Mutex::default() }
    }

    /// Whether `value` (the request's [`GRANT_HEADER`], if any) lets its
    /// sender fetch pieces of `task_id` from this parent now.
    pub fn check(&self, value: Option<&str>, task_id: &str) -> Result<Grant, Refusal> {
        let value = value.ok_or(Refusal::Missing)?;
        let key: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        let now = now_secs();
        let remembered = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
        let remembered = match remembered {
            Some(r) => r,
            None => {
                let r = self.verify(value)?;
                let mut verified = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if verified.len() >= CACHE_ENTRIES {
                    verified.retain(|_, r| r.grant.expires_at + CLOCK_SKEW.as_secs() >= now);
                    if verified.len() >= CACHE_ENTRIES {
                        verified.clear();
                    }
                }
                verified.insert(key, r.clone());
                r
            }
        };
        let grant = remembered.grant;
        if grant.expires_at.saturating_add(CLOCK_SKEW.as_secs()) < now
            || grant.expires_at > now + MAX_TTL.as_secs() + CLOCK_SKEW.as_secs()
        {
            return Err(Refusal::Expired);
        }
        if grant.task_id != task_id {
            return Err(Refusal::OtherTask);
        }
        if grant.parent_host_id != self.host_id {
            return Err(Refusal::OtherParent);
        }
        if self.credentials.is_revoked(&remembered.serial) {
            return Err(Refusal::Signer("the scheduler's certificate is revoked".into()));
        }
        Ok(grant)
    }

    /// The signature and signer of a grant not seen before.
    fn verify(&self, value: &str) -> Result<Remembered, Refusal> {
        let decoded = decode(value)?;
        let (leaf, intermediates) = decoded.chain.split_first().ok_or(Refusal::Malformed("no certificate"))?;
        let material = self.credentials.material();
        super::verify::chain_to_roots(leaf, intermediates, &material.roots)
            .map_err(|e| Refusal::Signer(e.to_string()))?;
        let facts = Facts::parse(leaf).map_err(Refusal::Signer)?;
        let own = &material.facts.identity;
        if facts.identity.role != Role::Scheduler || facts.identity.cluster_id != own.cluster_id {
            return Err(Refusal::Signer(format!(
                "{} is not a scheduler of cluster {}",
                facts.identity, own.cluster_id
            )));
        }
        verify_signature(leaf, decoded.scheme, &signed_message(&decoded.signed), &decoded.signature)?;
        Ok(Remembered { grant: decoded.grant, serial: facts.serial })
    }
}

/// Whether `signature` is `cert`'s key's signature of `message` under `scheme`.
fn verify_signature(
    cert: &CertificateDer<'_>,
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Refusal> {
    if !SCHEMES.contains(&scheme) {
        return Err(Refusal::Malformed("unsupported signature scheme"));
    }
    let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| Refusal::Signer(e.to_string()))?;
    let algorithms = super::provider().signature_verification_algorithms;
    let candidates = algorithms.mapping.iter().find(|(s, _)| *s == scheme).map_or(&[][..], |(_, algs)| *algs);
    if candidates.iter().any(|alg| cert.verify_signature(*alg, message, signature).is_ok()) {
        Ok(())
    } else {
        Err(Refusal::Signature)
    }
}
