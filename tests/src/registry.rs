//! A real OCI registry (`docker-registry`, the CNCF distribution registry
//! from Debian) on loopback: filesystem storage in its own directory,
//! optionally HTTPS with a self-signed certificate and htpasswd (basic)
//! auth, killed when dropped. Its access log tells tests which blobs it
//! served and how often.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::dfdaemon::tail;
use crate::eventually::{START_DEADLINE, poll};
use crate::process::ChildGuard;
use crate::tool::run;

/// How long generating a certificate or a password hash may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A user name and password for registry basic auth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// `user`/`password`.
    pub fn new(user: &str, password: &str) -> Self {
        Self { user: user.into(), password: password.into() }
    }
}

/// How to run the registry. The default is plain HTTP without auth.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Require these credentials (htpasswd, bcrypt) for every request.
    pub htpasswd: Option<Credentials>,
    /// Serve HTTPS with a fresh self-signed certificate for `127.0.0.1`
    /// (see [`RegistryProcess::ca_cert`]).
    pub tls: bool,
}

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// `GET`, `HEAD`, `PUT`...
    pub method: String,
    /// Path and query, e.g. `/v2/small/blobs/sha256:<hex>`.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes written.
    pub bytes: u64,
    /// The client's `User-Agent` (`containerd/1.6.20~ds1`, `skopeo/1.9.3`).
    pub user_agent: String,
}

impl AccessLogEntry {
    /// The blob digest (`sha256:<hex>`) when this is a request for
    /// `/v2/<name>/blobs/<digest>`.
    pub fn blob_digest(&self) -> Option<&str> {
        let path = self.path.split('?').next()?;
        let (_, digest) = path.strip_prefix("/v2/")?.rsplit_once("/blobs/")?;
        digest.starts_with("sha256:").then_some(digest)
    }

    /// Parses a combined-log-format line:
    /// `127.0.0.1 - - [date] "GET /path HTTP/1.1" 200 123 "referer" "agent"`.
    fn parse(line: &str) -> Option<Self> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once('"')?;
        let mut request = request.split(' ');
        let (method, path) = (request.next()?, request.next()?);
        let mut fields = rest.split_whitespace();
        let status = fields.next()?.parse().ok()?;
        let bytes = fields.next()?.parse().unwrap_or(0);
        let user_agent = rest.trim_end().strip_suffix('"')?.rsplit_once('"')?.1;
        Some(Self { method: method.into(), path: path.into(), status, bytes, user_agent: user_agent.into() })
    }
}

/// A running registry.
#[derive(Debug)]
pub struct RegistryProcess {
    /// Where it listens (loopback, the port the kernel gave it, read from its log).
    pub addr: SocketAddr,
    /// The credentials it requires, if any.
    pub credentials: Option<Credentials>,
    /// The PEM certificate clients must trust when it serves HTTPS
    /// (self-signed: it is its own CA; or the private CA that issued it, see
    /// [`RegistryProcess::start_with_private_ca`]).
    pub ca_cert: Option<PathBuf>,
    /// Its access log (one line per request, combined log format).
    pub access_log: PathBuf,
    /// Its application log (JSON lines).
    pub log_path: PathBuf,
    dir: PathBuf,
    child: Option<ChildGuard>,
}

impl RegistryProcess {
    /// Starts a registry storing its data, config and logs in `dir` and
    /// waits until it answers.
    pub async fn start(dir: &Path, options: RegistryOptions) -> anyhow::Result<Self> {
        Self::launch(dir, options, false).await
    }

    /// Like [`RegistryProcess::start`] with `tls`, but its certificate is an
    /// end-entity one (`CA:FALSE`) issued by a private test CA, and
    /// [`RegistryProcess::ca_cert`] is that CA's. Clients built on rustls
    /// (dfdaemon) need this: they refuse a self-signed `CA:TRUE` certificate
    /// as a server's own ("CaUsedAsEndEntity"), where Go clients accept it.
    pub async fn start_with_private_ca(dir: &Path, options: RegistryOptions) -> anyhow::Result<Self> {
        Self::launch(dir, RegistryOptions { tls: true, ..options }, true).await
    }

    async fn launch(dir: &Path, options: RegistryOptions, private_ca: bool) -> anyhow::Result<Self> {
        let bin = crate::tool::find("docker-registry").context("docker-registry is not installed")?;
        std::fs::create_dir_all(dir.join("storage"))?;
        // Port 0: the registry logs the address the kernel picked.
        let addr = "127.0.0.1:0";
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: darter-test-registry-secret\n",
            yaml_str(&dir.join("storage"))
        );
        let ca_cert = if options.tls {
            let (cert, key) = (dir.join("registry.crt"), dir.join("registry.key"));
            let trusted = if private_ca {
                let ca = dir.join("ca.crt");
                ca_signed_cert(&ca, &cert, &key).await?;
                ca
            } else {
                self_signed_cert(&cert, &key).await?;
                cert.clone()
            };
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", yaml_str(&cert), yaml_str(&key)));
            Some(trusted)
        } else {
            None
        };
        if let Some(c) = &options.htpasswd {
            let file = dir.join("htpasswd");
            let out = run(tokio::process::Command::new("htpasswd").args(["-Bbn", &c.user, &c.password]), SETUP_TIMEOUT)
                .await?;
            std::fs::write(&file, &out.stdout)?;
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: darter-test\n    path: {}\n", yaml_str(&file)));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)?;

        let (access_log, log_path) = (dir.join("access.log"), dir.join("registry.log"));
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            // The access log goes to stdout, the application log to stderr.
            .stdout(std::fs::File::create(&access_log)?)
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut child = ChildGuard::new(child);
        let listening = poll("the registry to log its address", START_DEADLINE, || {
            let addr = if child.has_exited() { None } else { listening_addr(&log_path) };
            async move { addr }
        })
        .await;
        let addr = match listening {
            Ok(addr) if !child.has_exited() => addr,
            _ => bail!("docker-registry did not start\n--- registry log tail ---\n{}", tail(&log_path, 20)),
        };
        Ok(Self {
            addr,
            credentials: options.htpasswd,
            ca_cert,
            access_log,
            log_path,
            dir: dir.to_path_buf(),
            child: Some(child),
        })
    }

    /// `127.0.0.1:<port>`: the host part of image references, and the value
    /// of containerd's `ns` parameter on mirror requests.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port>` or `https://...`.
    pub fn url(&self) -> String {
        let scheme = if self.ca_cert.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The directory holding its storage, config and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every request logged so far, oldest first.
    pub fn requests(&self) -> Vec<AccessLogEntry> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(AccessLogEntry::parse)
            .collect()
    }

    /// How many times each blob was served (`GET .../blobs/<digest>`
    /// answered 200 or 206), by digest, over all repositories. A line is
    /// logged when the response is complete, so right after a pull a test
    /// should poll (e.g. [`crate::eventually::wait_until`]) until the digests it expects appear.
    pub fn blob_gets(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.requests() {
            if r.method == "GET"
                && matches!(r.status, 200 | 206)
                && let Some(d) = r.blob_digest()
            {
                *counts.entry(d.to_string()).or_default() += 1;
            }
        }
        counts
    }

    /// The last `n` lines of the application log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }

    /// Kills it (SIGKILL); its storage stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }
}

/// `path` as a YAML scalar (a JSON string is valid YAML).
fn yaml_str(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).unwrap_or_default()
}

/// Writes a self-signed certificate for `127.0.0.1` and `localhost`, valid
/// for two days, and its unencrypted key.
async fn self_signed_cert(cert: &Path, key: &Path) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
        .arg(key)
        .arg("-out")
        .arg(cert);
    run(&mut cmd, SETUP_TIMEOUT).await.context("generate the registry's certificate")?;
    Ok(())
}

/// Writes a private CA (`ca`, its key next to it as `ca.key`) and a
/// certificate for `127.0.0.1` and `localhost` issued by it (`CA:FALSE`,
/// server auth), valid for two days, with its unencrypted key.
async fn ca_signed_cert(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let (ca_key, csr, ext) = (ca.with_extension("key"), cert.with_extension("csr"), cert.with_extension("ext"));
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=darter test CA"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(ca);
    run(&mut cmd, SETUP_TIMEOUT).await.context("generate the test CA")?;
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(key)
        .arg("-out")
        .arg(&csr);
    run(&mut cmd, SETUP_TIMEOUT).await.context("generate the registry's key and request")?;
    std::fs::write(
        &ext,
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )?;
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["x509", "-req", "-days", "2", "-set_serial", "2", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(cert);
    run(&mut cmd, SETUP_TIMEOUT).await.context("issue the registry's certificate")?;
    Ok(())
}

/// The address in the registry's `listening on 127.0.0.1:40123` log line.
fn listening_addr(log_path: &Path) -> Option<SocketAddr> {
    let log = std::fs::read_to_string(log_path).ok()?;
    let rest = &log[log.find("\"msg\":\"listening on ")? + "\"msg\":\"listening on ".len()..];
    rest[..rest.find([',', '"'])?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_access_log_lines() {
        let line = r#"127.0.0.1 - - [22/Nov/2026:06:35:11 +0000] "GET /v2/a/b/blobs/sha256:f1 HTTP/1.1" 206 2097 "" "containerd/1.6.20~ds1""#;
        let e = AccessLogEntry::parse(line).unwrap();
        assert_eq!((e.method.as_str(), e.status, e.bytes), ("GET", 206, 2097));
        assert_eq!(e.user_agent, "containerd/1.6.20~ds1");
        assert_eq!(e.blob_digest(), Some("sha256:f1"));
        let manifest =
            r#"127.0.0.1 - - [22/Nov/2026:06:35:11 +0000] "HEAD /v2/big/manifests/t HTTP/1.1" 200 351 "" "x""#;
        assert_eq!(AccessLogEntry::parse(manifest).unwrap().blob_digest(), None);
        let query = AccessLogEntry { path: "/v2/x/blobs/sha256:ab?ns=h".into(), ..e };
        assert_eq!(query.blob_digest(), Some("sha256:ab"));
        assert_eq!(AccessLogEntry::parse(r#"{"level":"info","msg":"listening"}"#), None);
    }
}
