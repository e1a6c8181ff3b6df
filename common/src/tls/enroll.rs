//! A member's certificate over its life: [`establish`] it at start (from
//! files, from a previous enrollment kept in the member's state directory,
//! or by enrolling with a join token), then [`maintain`] it: reload files
//! when they change, renew an enrolled certificate at two thirds of its
//! life, and fetch the manager's trust bundle (the revoked serials) on every
//! refresh.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use darter_proto::manager::v1::manager_client::ManagerClient;
use darter_proto::manager::v1::{EnrollRequest, IssuedCertificate, RenewCertificateRequest};
use tokio_util::sync::CancellationToken;

use super::config::{ManagerCa, Source, TlsConfig};
use super::credentials::{Credentials, Material};
use super::identity::{Identity, Role};
use super::{Expect, Transport, certificate, connect};

/// What a member is and where it keeps its enrolled certificate.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// Its `tls` section.
    pub tls: &'a TlsConfig,
    /// The section's name in errors (`tls`).
    pub section: &'a str,
    /// The role it runs as.
    pub role: Role,
    /// Its host name (what an enrolled identity carries).
    pub host: &'a str,
    /// The manager's gRPC addresses.
    pub manager_addrs: &'a [String],
    /// Where an enrolled certificate and key are kept (made 0700); `None`:
    /// in memory only (the member enrolls again at each start).
    pub state_dir: Option<PathBuf>,
    /// Timeout for connecting to the manager.
    pub connect_timeout: Duration,
}

/// A member's transport and where its certificate came from.
#[derive(Debug, Clone)]
pub struct Established {
    /// Plaintext or mTLS with the member's credentials.
    pub transport: Transport,
    /// `None` in plaintext mode.
    pub source: Option<Source>,
}

/// Connect and call timeout of enrollment, renewal and trust bundle calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

const CERT: &str = "member.crt";
const KEY: &str = "member.key";
const CA: &str = "ca.crt";

/// Gets the member's certificate: see the module doc.
pub async fn establish(m: &Member<'_>) -> Result<Established, String> {
    let source = m.tls.source(m.section).map_err(|e| e.to_string())?;
    let Some(source) = source else {
        tracing::warn!(
            "{}.mode is plaintext: control connections are neither encrypted nor authenticated; \
             anyone who reaches this member's ports can call them (development only)",
            m.section
        );
        return Ok(Established { transport: Transport::Plaintext, source: None });
    };
    let material = match &source {
        Source::Files(files) => files.load()?,
        Source::Enrollment { token, manager_ca } => match m.state_dir.as_deref().and_then(stored) {
            Some(material) if fits(&material, m) && same_ca(&material, manager_ca) => {
                tracing::info!(identity = %material.facts.identity, "using the certificate from an earlier enrollment");
                material
            }
            _ => enroll(m, token, manager_ca).await?,
        },
    };
    let identity = material.identity();
    if identity.role != m.role {
        return Err(format!("{}: the certificate names {identity}, but this process runs as a {}", m.section, m.role));
    }
    tracing::info!(%identity, serial = %material.facts.serial, "mutual TLS on control connections");
    Ok(Established { transport: Transport::Mtls(Credentials::new(material)), source: Some(source) })
}

/// Whether an earlier enrollment's certificate serves this member: same
/// role and host, and valid for at least another minute.
fn fits(material: &Material, m: &Member<'_>) -> bool {
    let id = material.identity();
    id.role == m.role && id.host == m.host && material.facts.not_after > SystemTime::now() + Duration::from_secs(60)
}

/// Whether the stored certificate's CA is the one this member is told to
/// trust now (`tls.ca_cert_hash` or `tls.ca_file`): after a reinstall with a
/// new CA, a kept state directory must not keep the old cluster's
/// certificate, which every member of the new one would refuse.
fn same_ca(material: &Material, manager_ca: &ManagerCa) -> bool {
    let same = match manager_ca {
        ManagerCa::Pin(pin) => material.ca.iter().any(|c| certificate::ca_pin(c).is_ok_and(|p| p == *pin)),
        ManagerCa::File(path) => std::fs::read(path)
            .ok()
            .and_then(|pem| certificate::certs_from_pem(&pem).ok())
            .is_some_and(|given| given.iter().any(|g| material.ca.contains(g))),
    };
    if !same {
        tracing::info!("the stored certificate is of another CA than the configured one; enrolling again");
    }
    same
}

fn stored(dir: &Path) -> Option<Material> {
    if !dir.join(CERT).exists() {
        return None;
    }
    match Material::from_files(&dir.join(CERT), &dir.join(KEY), &dir.join(CA)) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "ignoring the stored certificate; enrolling again");
            None
        }
    }
}

/// A new key and a signing request for it.
fn key_and_request() -> Result<(rcgen::KeyPair, Vec<u8>), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .map_err(|e| format!("cannot make a certificate request: {e}"))?;
    Ok((key, csr.der().to_vec()))
}

/// Checks what the manager issued for `key`, keeps it in `dir`, and returns it.
fn accept(issued: &IssuedCertificate, key: &rcgen::KeyPair, dir: Option<&Path>) -> Result<Material, String> {
    let chain = certificate::certs_from_pem(issued.certificate_pem.as_bytes())
        .map_err(|e| format!("the manager's certificate: {e}"))?;
    let ca = certificate::certs_from_pem(issued.ca_pem.as_bytes()).map_err(|e| format!("the manager's CA: {e}"))?;
    let key_der = certificate::key_from_pem(key.serialize_pem().as_bytes())?;
    let material = Material::new(chain, key_der, ca)?;
    if let Some(dir) = dir {
        store(dir, &issued.certificate_pem, &key.serialize_pem(), &issued.ca_pem)?;
    }
    Ok(material)
}

/// Writes the certificate, key and CA into `dir` (0700; files 0600, each
/// renamed into place so a crash leaves the old or the new one).
fn store(dir: &Path, cert: &str, key: &str, ca: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let fail = |e: std::io::Error| format!("cannot keep the certificate in {}: {e}", dir.display());
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    for (name, text) in [(KEY, key), (CA, ca), (CERT, cert)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(fail)?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(fail)?;
        std::fs::rename(&tmp, dir.join(name)).map_err(fail)?;
    }
    Ok(())
}

async fn enroll(m: &Member<'_>, token: &str, manager_ca: &ManagerCa) -> Result<Material, String> {
    if m.manager_addrs.is_empty() {
        return Err(format!("{}: enrolling with a join token needs the manager's address (manager.addrs)", m.section));
    }
    let (key, csr) = key_and_request()?;
    let config = super::first_contact_config(manager_ca)?;
    let mut errors = Vec::new();
    for addr in m.manager_addrs {
        let endpoint = connect::endpoint(addr)?.connect_timeout(m.connect_timeout).timeout(CALL_TIMEOUT);
        let channel = connect::lazy(endpoint, Some(config.clone()));
        let request = EnrollRequest {
            token: token.to_owned(),
            csr: csr.clone().into(),
            hostname: m.host.to_owned(),
            role: m.role.as_str().to_owned(),
        };
        match ManagerClient::new(channel).enroll(request).await {
            Ok(issued) => {
                let material = accept(issued.get_ref(), &key, m.state_dir.as_deref())?;
                tracing::info!(manager = %addr, identity = %material.facts.identity, "enrolled");
                return Ok(material);
            }
            // The manager answered and said no: another manager would too.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::PermissionDenied | tonic::Code::Unauthenticated | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(format!("the manager at {addr} refused the join token: {}", s.message()));
            }
            Err(s) => errors.push(format!("{addr}: {}", s.message())),
        }
    }
    Err(format!("cannot enroll with any manager: {}", errors.join("; ")))
}

async fn renew(
    credentials: &Arc<Credentials>,
    transport: &Transport,
    addrs: &[String],
    dir: Option<&Path>,
) -> Result<(), String> {
    let (key, csr) = key_and_request()?;
    let mut errors = Vec::new();
    for addr in addrs {
        let endpoint = connect::endpoint(addr)?.connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT);
        let channel = transport.channel(endpoint, Expect::manager());
        match ManagerClient::new(channel).renew_certificate(RenewCertificateRequest { csr: csr.clone().into() }).await {
            Ok(issued) => {
                credentials.replace(accept(issued.get_ref(), &key, dir)?)?;
                return Ok(());
            }
            Err(s) => errors.push(format!("{addr}: {}", s.message())),
        }
    }
    Err(errors.join("; "))
}

/// When to renew: at two thirds of the certificate's life.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life * 2 / 3
}

fn until(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::now()).unwrap_or_default()
}

/// What [`maintain`] needs.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// The member's transport (nothing to do in plaintext mode).
    pub transport: Transport,
    /// Where its certificate came from.
    pub source: Option<Source>,
    /// The manager's gRPC addresses (no renewal and no trust bundle without).
    pub manager_addrs: Vec<String>,
    /// Where an enrolled certificate is kept (`None`: in memory).
    pub state_dir: Option<PathBuf>,
    /// How often the trust bundle is fetched.
    pub refresh_interval: Duration,
}

/// Keeps the certificate current until `stop`: see the module doc.
pub fn maintain(m: Maintenance, tracker: &tokio_util::task::TaskTracker, stop: CancellationToken) {
    let Transport::Mtls(credentials) = m.transport.clone() else { return };
    match &m.source {
        Some(Source::Files(files)) => {
            let interval = Duration::from_secs(10).min(m.refresh_interval.max(Duration::from_millis(100)));
            tracker.spawn(files.clone().watch(credentials.clone(), interval, stop.clone()));
        }
        Some(Source::Enrollment { .. }) if !m.manager_addrs.is_empty() => {
            let (credentials, m, stop) = (credentials.clone(), m.clone(), stop.clone());
            tracker.spawn(async move { renew_loop(credentials, m, stop).await });
        }
        _ => {}
    }
    if !m.manager_addrs.is_empty() {
        tracker.spawn(trust_bundle_loop(credentials, m, stop));
    }
}

async fn renew_loop(credentials: Arc<Credentials>, m: Maintenance, stop: CancellationToken) {
    loop {
        let facts = credentials.material().facts.clone();
        let wait = until(renewal_time(facts.not_before, facts.not_after));
        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(wait) => {} }
        loop {
            // Renewal needs a valid certificate: once it has expired (the
            // manager was away past it), the join token enrolls the member
            // again, if it still works.
            let renewed = if SystemTime::now() >= facts.not_after {
                reenroll(&credentials, &m).await
            } else {
                renew(&credentials, &m.transport, &m.manager_addrs, m.state_dir.as_deref()).await
            };
            match renewed {
                Ok(()) => {
                    let f = credentials.material().facts.clone();
                    tracing::info!(serial = %f.serial, "renewed the certificate");
                    break;
                }
                Err(e) => {
                    let left = until(facts.not_after);
                    tracing::warn!(error = %e, expires_in = ?left, "cannot renew the certificate; retrying");
                    let retry = (left / 10).clamp(Duration::from_millis(200), Duration::from_secs(30));
                    tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(retry) => {} }
                }
            }
        }
    }
}

/// Enrolls again with the join token, as the same identity.
async fn reenroll(credentials: &Arc<Credentials>, m: &Maintenance) -> Result<(), String> {
    let Some(Source::Enrollment { token, manager_ca }) = &m.source else {
        return Err("the certificate has expired and there is no join token to enroll again with".into());
    };
    let identity = credentials.identity();
    let tls = TlsConfig::default();
    let member = Member {
        tls: &tls,
        section: "tls",
        role: identity.role,
        host: &identity.host,
        manager_addrs: &m.manager_addrs,
        state_dir: m.state_dir.clone(),
        connect_timeout: CALL_TIMEOUT,
    };
    let material = enroll(&member, token, manager_ca).await?;
    credentials.replace(material)
}

async fn trust_bundle_loop(credentials: Arc<Credentials>, m: Maintenance, stop: CancellationToken) {
    loop {
        for addr in &m.manager_addrs {
            let Ok(endpoint) = connect::endpoint(addr) else { continue };
            let channel =
                m.transport.channel(endpoint.connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT), Expect::manager());
            match ManagerClient::new(channel).get_trust_bundle(()).await {
                Ok(bundle) => {
                    let revoked: HashSet<String> = bundle.into_inner().revoked_serials.into_iter().collect();
                    credentials.set_revoked(revoked);
                    break;
                }
                Err(s) => tracing::debug!(manager = %addr, error = %s.message(), "cannot fetch the trust bundle"),
            }
        }
        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(m.refresh_interval) => {} }
    }
}

/// The identity an enrolled member would get is decided by the manager; this
/// is what a member can check of it before: its host name form.
pub fn check_member_host(host: &str) -> Result<(), String> {
    super::identity::check_host(host)
}

impl Identity {
    /// Whether this identity is one of `roles`.
    pub fn is(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role)
    }
}
