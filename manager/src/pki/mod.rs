//! The manager as the cluster's certificate authority (ARCHITECTURE.md §7).
//!
//! - [`authority`]: the CA (generated and kept in the database, or from
//!   files) and what it signs;
//! - [`bootstrap`]: join tokens kept alive from a file (the Helm chart's
//!   Secret), as kubeadm's bootstrap tokens;
//! - this module: [`Pki`], which enrolls members that present a join token,
//!   renews certificates over mutual TLS, answers the trust bundle (CA and
//!   revoked serials), creates and revokes join tokens, keeps the manager's
//!   own serving certificate current and the revoked set fresh.
//!
//! A join token is `<id>.<secret>` and names a role, a cluster, an expiry and
//! a number of uses; the secret is stored hashed. The certificate an
//! enrolled member gets names the token's role and cluster and the member's
//! host name, and records the token, so revoking the token revokes it.

pub mod authority;
pub mod bootstrap;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use darter_common::tls::certificate::Facts;
use darter_common::tls::{Credentials, Identity, Peer, Role, Transport};
use darter_proto::manager::v1 as pb;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::ManagerTlsConfig;
use crate::error::Error;
use crate::store::{IssuedCert, JoinToken, NewJoinToken, Store, StoreError, Timestamp};
use authority::{Authority, Signed};

/// How often the revoked set is reloaded from the database (revocations on
/// another replica take effect here within this).
const REVOKED_REFRESH: Duration = Duration::from_secs(2);

/// The manager's CA and its enrollment service.
#[derive(Debug)]
pub struct Pki {
    authority: Authority,
    credentials: Arc<Credentials>,
    validity: Duration,
    max_token_ttl: Duration,
    non_expiring_tokens: bool,
    host: String,
    store: Store,
    clock: Clock,
}

/// The expiry of a join token made with `ttl: "never"`: the last
/// millisecond of the year 9999 (what the console shows as "never").
pub const NEVER_EXPIRES: Timestamp = Timestamp(253_402_300_799_999);

/// A join token as created: the stored row and the one time its secret is
/// shown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedJoinToken {
    /// The stored token.
    #[serde(flatten)]
    pub token: JoinToken,
    /// `<id>.<secret>`: what a member's `tls.join_token` takes. Shown once.
    pub join_token: String,
    /// The CA pin, what a member's `tls.ca_cert_hash` takes.
    pub ca_cert_hash: String,
}

/// What a join token is created with.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// `scheduler`, `seed_peer` or `peer`.
    pub role: String,
    /// The cluster its members join (default: the default cluster).
    pub cluster_id: Option<i64>,
    /// How long it works, e.g. `24h` (default `24h`, at most `tls.max_token_ttl`),
    /// or `never`: until revoked (unless `tls.non_expiring_tokens` is false).
    pub ttl: Option<String>,
    /// How many members may enroll with it (default 0: any number until it expires).
    pub max_uses: Option<i64>,
    /// A note for operators.
    pub description: Option<String>,
}

fn token_secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_chars(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

fn store_err(e: StoreError) -> Error {
    Error::from(e)
}

impl Pki {
    /// Loads (or creates) the CA and issues the manager's own certificate.
    /// `None` in plaintext mode.
    pub async fn start(config: &ManagerTlsConfig, store: &Store, clock: Clock) -> anyhow::Result<Option<Arc<Pki>>> {
        if config.mode == darter_common::tls::TlsMode::Plaintext {
            tracing::warn!(
                "tls.mode is plaintext: members are neither authenticated nor encrypted and enrollment is off \
                 (development only)"
            );
            return Ok(None);
        }
        let files = config.ca_cert_file.as_deref().zip(config.ca_key_file.as_deref());
        let authority = Authority::load(files, store).await?;
        let host = config.hostname.clone().unwrap_or_else(darter_common::host::os_hostname);
        let identity = Identity::new(Role::Manager, 0, &host).map_err(|e| anyhow::anyhow!("tls.hostname: {e}"))?;
        let (material, signed) = authority.own_material(&identity, config.cert_validity)?;
        let pki = Pki {
            authority,
            credentials: Credentials::new(material),
            validity: config.cert_validity,
            max_token_ttl: config.max_token_ttl,
            non_expiring_tokens: config.non_expiring_tokens,
            host,
            store: store.clone(),
            clock,
        };
        pki.record(&signed, &identity, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        pki.refresh_revoked().await;
        tracing::info!(ca_cert_hash = %pki.authority.pin(), "the manager is the cluster's CA");
        Ok(Some(Arc::new(pki)))
    }

    /// The manager's transport for its gRPC server.
    pub fn transport(&self) -> Transport {
        Transport::Mtls(self.credentials.clone())
    }

    /// The CA's pin.
    pub fn ca_cert_hash(&self) -> &str {
        self.authority.pin()
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        self.authority.ca_pem()
    }

    async fn record(&self, signed: &Signed, identity: &Identity, token_id: Option<&str>) -> Result<(), Error> {
        let cert = IssuedCert {
            serial: signed.serial.clone(),
            role: identity.role.as_str().to_owned(),
            cluster_id: identity.cluster_id as i64,
            host: identity.host.clone(),
            token_id: token_id.map(str::to_owned),
            not_after: Timestamp::from_system_time(signed.not_after).0,
            revoked_at: None,
            issued_at: self.clock.timestamp().0,
        };
        self.store.record_certificate(&cert).await.map_err(store_err)
    }

    fn issued(&self, signed: &Signed) -> pb::IssuedCertificate {
        pb::IssuedCertificate { certificate_pem: signed.pem.clone(), ca_pem: self.authority.ca_pem().to_owned() }
    }

    /// `Enroll`: a join token and a signing request in, a certificate out.
    /// Every refusal of the token itself says the same thing, so a stranger
    /// learns nothing about which tokens exist.
    pub async fn enroll(&self, req: pb::EnrollRequest) -> Result<pb::IssuedCertificate, Error> {
        let refused =
            || Error::Unauthenticated("the join token is not valid (unknown, expired, used up or revoked)".into());
        let (id, secret) = req.token.split_once('.').ok_or_else(refused)?;
        darter_common::tls::config::check_token_form(&req.token).map_err(|_| refused())?;
        let role: Role = req.role.parse().map_err(|e: String| Error::invalid("role", e))?;
        darter_common::tls::identity::check_host(&req.hostname).map_err(|e| Error::invalid("hostname", e))?;
        // Turned off, tokens made to never expire stop working too.
        if !self.non_expiring_tokens
            && self.store.get_join_token(id).await.is_ok_and(|t| t.expires_at >= NEVER_EXPIRES.0)
        {
            tracing::warn!(token = %id, "a join token that never expires was refused (tls.non_expiring_tokens: false)");
            return Err(refused());
        }
        let token =
            self.store.consume_join_token(id, &token_secret_hash(secret), self.clock.timestamp()).await.map_err(
                |e| match e {
                    StoreError::NotFound => refused(),
                    e => store_err(e),
                },
            )?;
        if token.role != role.as_str() {
            return Err(Error::PermissionDenied(format!("this join token is for a {}, not a {role}", token.role)));
        }
        let identity =
            Identity::new(role, token.cluster_id as u64, &req.hostname).map_err(|e| Error::invalid("hostname", e))?;
        let signed =
            self.authority.sign_request(&identity, &req.csr, self.validity).map_err(|e| Error::invalid("csr", e))?;
        self.record(&signed, &identity, Some(&token.id)).await?;
        tracing::info!(%identity, serial = %signed.serial, token = %token.id, "member enrolled");
        Ok(self.issued(&signed))
    }

    /// `RenewCertificate`: the caller's current certificate (verified in the
    /// handshake) must be one this CA issued and not revoked; the new one
    /// names the same identity and carries the same token.
    pub async fn renew(
        &self,
        caller: Option<&Peer>,
        req: pb::RenewCertificateRequest,
    ) -> Result<pb::IssuedCertificate, Error> {
        let (Some(identity), Some(serial)) =
            (caller.and_then(|p| p.identity.as_ref()), caller.and_then(|p| p.serial.as_ref()))
        else {
            return Err(Error::Unauthenticated("renewal needs the certificate being renewed".into()));
        };
        let current = self.store.get_certificate(serial).await.map_err(|e| match e {
            StoreError::NotFound => {
                Error::PermissionDenied("this CA has no record of the certificate; enroll again".into())
            }
            e => store_err(e),
        })?;
        if current.revoked_at.is_some() {
            return Err(Error::PermissionDenied(
                "the certificate was revoked; enroll again with a new join token".into(),
            ));
        }
        if identity.role == Role::Manager {
            return Err(Error::PermissionDenied("the manager's certificate is not renewed here".into()));
        }
        let signed =
            self.authority.sign_request(identity, &req.csr, self.validity).map_err(|e| Error::invalid("csr", e))?;
        self.record(&signed, identity, current.token_id.as_deref()).await?;
        tracing::info!(%identity, serial = %signed.serial, "certificate renewed");
        Ok(self.issued(&signed))
    }

    /// `GetTrustBundle`.
    pub async fn trust_bundle(&self) -> Result<pb::TrustBundle, Error> {
        let revoked_serials = self.store.revoked_serials(self.clock.timestamp()).await.map_err(store_err)?;
        Ok(pb::TrustBundle { ca_pem: self.authority.ca_pem().to_owned(), revoked_serials })
    }

    /// Creates a join token.
    pub async fn create_join_token(
        &self,
        req: &JoinTokenRequest,
        default_cluster: i64,
    ) -> Result<CreatedJoinToken, Error> {
        let role: Role = req.role.parse().map_err(|e: String| Error::invalid("role", e))?;
        if role == Role::Manager {
            return Err(Error::invalid("role", "members join as scheduler, seed_peer or peer"));
        }
        let never = req.ttl.as_deref().is_some_and(|t| t.trim().eq_ignore_ascii_case("never"));
        if never && !self.non_expiring_tokens {
            return Err(Error::invalid("ttl", "tokens that never expire are turned off (tls.non_expiring_tokens)"));
        }
        let ttl = match &req.ttl {
            _ if never => Duration::ZERO,
            None => Duration::from_secs(24 * 3600),
            Some(s) => humantime::parse_duration(s).map_err(|e| Error::invalid("ttl", format!("{s:?}: {e}")))?,
        };
        if !never && (ttl.is_zero() || ttl > self.max_token_ttl) {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "must be more than 0 and at most {} (tls.max_token_ttl)",
                    humantime::format_duration(self.max_token_ttl)
                ),
            ));
        }
        let max_uses = req.max_uses.unwrap_or(0);
        if max_uses < 0 {
            return Err(Error::invalid("max_uses", "must be 0 (any number) or more"));
        }
        let description = req.description.clone().unwrap_or_default();
        if description.len() > 1024 {
            return Err(Error::invalid("description", "at most 1024 bytes"));
        }
        let cluster_id = req.cluster_id.unwrap_or(default_cluster);
        self.store.get_cluster(cluster_id).await.map_err(|e| match e {
            StoreError::NotFound => Error::NotFound(format!("cluster {cluster_id} not found")),
            e => store_err(e),
        })?;
        let secret = random_chars(16);
        let now = self.clock.timestamp();
        let new = NewJoinToken {
            id: random_chars(6),
            secret_hash: token_secret_hash(&secret),
            role: role.as_str().to_owned(),
            cluster_id,
            description,
            expires_at: if never { NEVER_EXPIRES } else { now.saturating_add(ttl) },
            max_uses,
        };
        let token = self.store.create_join_token(&new, now).await.map_err(store_err)?;
        tracing::info!(token = %token.id, role = %token.role, cluster_id, "join token created");
        Ok(CreatedJoinToken {
            join_token: format!("{}.{secret}", token.id),
            token,
            ca_cert_hash: self.authority.pin().to_owned(),
        })
    }

    /// Revokes a join token and the certificates it enrolled.
    pub async fn revoke_join_token(&self, id: &str) -> Result<Vec<String>, Error> {
        let serials = self.store.revoke_join_token(id, self.clock.timestamp()).await.map_err(|e| match e {
            StoreError::NotFound => Error::NotFound(format!("join token {id} not found")),
            e => store_err(e),
        })?;
        self.refresh_revoked().await;
        tracing::info!(token = %id, certificates = serials.len(), "join token revoked");
        Ok(serials)
    }

    /// Revokes one certificate.
    pub async fn revoke_certificate(&self, serial: &str) -> Result<(), Error> {
        self.store.revoke_certificate(serial, self.clock.timestamp()).await.map_err(|e| match e {
            StoreError::NotFound => Error::NotFound(format!("certificate {serial} not found")),
            e => store_err(e),
        })?;
        self.refresh_revoked().await;
        tracing::info!(%serial, "certificate revoked");
        Ok(())
    }

    /// Reloads the revoked serials into the manager's own handshake checks.
    pub async fn refresh_revoked(&self) {
        match self.store.revoked_serials(self.clock.timestamp()).await {
            Ok(serials) => self.credentials.set_revoked(serials.into_iter().collect()),
            Err(e) => tracing::warn!(error = %e, "cannot load revoked certificates"),
        }
    }

    /// Keeps the revoked set fresh, the manager's own certificate renewed
    /// and expired rows collected, until `stop`.
    pub fn spawn_upkeep(self: &Arc<Self>, tracker: &TaskTracker, stop: CancellationToken) {
        let pki = self.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(REVOKED_REFRESH);
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
                pki.refresh_revoked().await;
                let facts: Facts = pki.credentials.material().facts.clone();
                if SystemTime::now() >= darter_common::tls::enroll::renewal_time(facts.not_before, facts.not_after) {
                    pki.renew_own().await;
                }
                if let Err(e) = pki.store.gc_pki(pki.clock.timestamp()).await {
                    tracing::debug!(error = %e, "cannot collect expired certificates and tokens");
                }
            }
        });
    }

    async fn renew_own(&self) {
        let identity = match Identity::new(Role::Manager, 0, &self.host) {
            Ok(i) => i,
            Err(e) => return tracing::warn!(error = %e, "cannot renew the manager's certificate"),
        };
        let renewed = self.authority.own_material(&identity, self.validity);
        match renewed {
            Ok((material, signed)) => {
                if let Err(e) = self.record(&signed, &identity, None).await {
                    tracing::warn!(error = %e, "cannot record the manager's renewed certificate");
                }
                if let Err(e) = self.credentials.replace(material) {
                    tracing::warn!(error = %e, "cannot use the manager's renewed certificate");
                } else {
                    tracing::info!(serial = %signed.serial, "renewed the manager's certificate");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the manager's certificate"),
        }
    }
}
