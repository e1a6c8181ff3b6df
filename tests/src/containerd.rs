//! A real `containerd` of its own per test node (own root, state, sockets and
//! config, so several run side by side on one machine), image pulls with
//! `ctr`, the registry hosts configuration (`certs.d/<host>/hosts.toml`) that
//! points containerd at a registry and its mirrors, and reading back what a
//! pull unpacked.
//!
//! How containerd 1.6 (Debian 12) pulls, which this kit relies on:
//! - `ctr images pull` resolves and fetches **client-side**, in the `ctr`
//!   process: the `hosts.toml` that counts is the one under `--hosts-dir`
//!   (the daemon's `config_path` is read only by its CRI plugin, which is
//!   disabled here). Newer `ctr`s that can pull through the daemon's
//!   transfer service are given `--local` so they behave the same.
//! - Hosts are tried in file order (mirrors), then `server`; any failure on
//!   a mirror (connection refused, 5xx, 401 it cannot answer, 404) makes
//!   containerd retry that request on the next host. Requests to a mirror
//!   carry `?ns=<registry host>`; requests to `server` do not.
//! - A `hosts.toml` without any `[host...]` table fails to parse in 1.6
//!   ("invalid `host` tree") and is ignored, so [`write_hosts_toml`] always
//!   writes one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::dfdaemon::tail;
use crate::eventually::{START_DEADLINE, wait_until};
use crate::process::ChildGuard;
use crate::registry::{Credentials, RegistryProcess};
use crate::service::last_lines;
use crate::tool::{run, run_unchecked, text};

/// Default limit for one `ctr` command other than a pull.
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// The snapshotter every pull unpacks into: plain directories, no overlayfs
/// needed, and a committed snapshot is the whole image root.
const SNAPSHOTTER: &str = "native";

/// Plugins that would need other services, kernel features or storage.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
];

/// A running containerd.
#[derive(Debug)]
pub struct ContainerdProcess {
    /// Its directory: `config.toml`, `root/`, `state/`, socket and log.
    pub dir: PathBuf,
    /// Its gRPC socket (`ctr --address`).
    pub socket: PathBuf,
    /// Its log (stdout and stderr).
    pub log_path: PathBuf,
    child: Option<ChildGuard>,
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// A `certs.d`-style directory (`<host>/hosts.toml`, see
    /// [`write_hosts_toml`]). Without one, containerd talks to the image's
    /// registry directly (plain HTTP for a loopback registry).
    pub hosts_dir: Option<PathBuf>,
    /// Registry credentials (`ctr --user`), offered to whichever host
    /// (mirror or server) challenges with a 401.
    pub credentials: Option<Credentials>,
    /// Kill `ctr` and fail after this long.
    pub timeout: Duration,
}

impl Default for PullOptions {
    /// No hosts dir, no credentials, two minutes.
    fn default() -> Self {
        Self { hosts_dir: None, credentials: None, timeout: Duration::from_secs(120) }
    }
}

impl PullOptions {
    /// Pull through the `hosts.toml` files under `hosts_dir`.
    pub fn with_hosts_dir(hosts_dir: &Path) -> Self {
        Self { hosts_dir: Some(hosts_dir.to_path_buf()), ..Self::default() }
    }
}

/// A successful pull.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// Chain ID of the unpacked image (the committed snapshot's key; equals
    /// [`crate::oci::TestImage::chain_id`]).
    pub chain_id: String,
    /// What `ctr` printed (progress and, on fallbacks, "trying next host").
    pub output: String,
    /// How long the pull took, unpacking included.
    pub elapsed: Duration,
}

impl ContainerdProcess {
    /// Starts containerd in `dir` (created if needed; keep the path short:
    /// the socket path must fit in 108 bytes) and waits until it serves.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = crate::tool::find("containerd").context("containerd is not installed")?;
        std::fs::create_dir_all(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let socket = dir.join("containerd.sock");
        if socket.as_os_str().len() > 100 {
            bail!("containerd socket path {} is too long for a unix socket", socket.display());
        }
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml(&dir, &socket))?;
        let log_path = dir.join("containerd.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut d = Self { dir, socket, log_path, child: Some(ChildGuard::new(child)) };
        let socket = d.socket.clone();
        let ready = wait_until("the containerd socket", START_DEADLINE, || {
            let listening = std::os::unix::net::UnixStream::connect(&socket).is_ok();
            async move { listening }
        })
        .await;
        let exited = d.child.as_mut().is_none_or(ChildGuard::has_exited);
        if ready.is_err() || exited {
            bail!("containerd did not start\n--- containerd log tail ---\n{}", d.log_tail(30));
        }
        d.ctr(&["version"]).await.context("containerd does not answer")?;
        Ok(d)
    }

    /// Pulls `reference` (`127.0.0.1:5000/small:v1`) and unpacks it into
    /// the native snapshotter. Fails with `ctr`'s output when the pull
    /// fails or takes longer than `options.timeout`.
    pub async fn pull(&self, reference: &str, options: &PullOptions) -> anyhow::Result<Pulled> {
        let mut cmd = self.ctr_command();
        cmd.args(["images", "pull", "--snapshotter", SNAPSHOTTER, "--print-chainid"]);
        if ctr_has_local_flag() {
            cmd.arg("--local");
        }
        if let Some(dir) = &options.hosts_dir {
            cmd.arg("--hosts-dir").arg(dir);
        }
        if let Some(c) = &options.credentials {
            cmd.args(["--user", &format!("{}:{}", c.user, c.password)]);
        }
        cmd.arg(reference);
        let started = Instant::now();
        let out = run_unchecked(&mut cmd, options.timeout).await.with_context(|| format!("pull {reference}"))?;
        let elapsed = started.elapsed();
        let output = text(&out);
        if !out.status.success() {
            bail!("pull {reference} failed ({}):\n{}", out.status, last_lines(&output, 20));
        }
        let chain_id = output
            .lines()
            .find_map(|l| l.trim().strip_prefix("image chain ID: "))
            .with_context(|| format!("ctr printed no chain ID:\n{}", last_lines(&output, 20)))?
            .to_string();
        Ok(Pulled { chain_id, output, elapsed })
    }

    /// Every regular file of the committed snapshot `chain_id` (an unpacked
    /// image root): path relative to the root to lowercase hex SHA-256.
    /// Read through a temporary read-only view (for the native snapshotter a
    /// bind mount of the snapshot's directory, which is read directly).
    pub async fn rootfs_files(&self, chain_id: &str) -> anyhow::Result<BTreeMap<String, String>> {
        static VIEWS: AtomicU32 = AtomicU32::new(0);
        let key = format!("darter-view-{}-{}", std::process::id(), VIEWS.fetch_add(1, Ordering::Relaxed));
        let snapshots = ["snapshots", "--snapshotter", SNAPSHOTTER];
        let mounts = self.ctr(&[&snapshots[..], &["view", "--mounts", &key, chain_id]].concat()).await?;
        let files = async {
            let mounts: Vec<serde_json::Value> = serde_json::from_str(&mounts).context("parse snapshot mounts")?;
            // A native view is a read-only bind mount of the parent's
            // directory: read that directory instead of mounting it.
            let source = match mounts.as_slice() {
                [m] if m["Type"] == "bind" => PathBuf::from(m["Source"].as_str().context("mount has no source")?),
                _ => bail!("unexpected mounts for a native snapshot view: {mounts:?}"),
            };
            tokio::task::spawn_blocking(move || hash_tree(&source)).await?
        }
        .await;
        // The view has no lease: containerd's garbage collector may already
        // have removed it (its parent, the image's snapshot, stays).
        if let Err(e) = self.ctr(&[&snapshots[..], &["rm", &key]].concat()).await
            && !e.to_string().contains("not found")
        {
            return Err(e);
        }
        files
    }

    /// Runs `ctr --address <socket> <args>` (one minute at most) and
    /// returns its stdout; fails with its output if it fails.
    pub async fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run(self.ctr_command().args(args), CTR_TIMEOUT).await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }

    fn ctr_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ctr");
        cmd.arg("--address").arg(&self.socket);
        cmd
    }
}

impl Drop for ContainerdProcess {
    /// Kills containerd, lazily unmounts anything it left mounted under its
    /// directory (an unpack interrupted mid-layer) and removes its root and
    /// state (image content and snapshots); config and log stay.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
        for mount_point in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&mount_point).status();
        }
        for sub in ["root", "state", "opt"] {
            let _ = std::fs::remove_dir_all(self.dir.join(sub));
        }
    }
}

/// Writes `<certs_d>/<registry host>/hosts.toml` for `registry`: `server` is
/// the registry itself (trusting its certificate when it serves HTTPS), and
/// each of `mirrors` (URLs such as `http://127.0.0.1:4001`) is tried first,
/// in order, for pulls and resolves. Returns the file's path.
pub fn write_hosts_toml(certs_d: &Path, registry: &RegistryProcess, mirrors: &[&str]) -> anyhow::Result<PathBuf> {
    let mut toml = format!("server = {}\n", toml_str(&registry.url()));
    if let Some(ca) = &registry.ca_cert {
        toml.push_str(&format!("ca = {}\n", toml_str(&ca.to_string_lossy())));
    }
    if mirrors.is_empty() {
        // containerd 1.6 ignores a hosts.toml without a `host` table.
        toml.push_str("\n[host]\n");
    }
    for mirror in mirrors {
        toml.push_str(&format!("\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n", toml_str(mirror)));
    }
    let dir = certs_d.join(registry.host());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("hosts.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// The daemon's config: everything under `dir`, nothing shared with another
/// containerd on the machine.
fn config_toml(dir: &Path, socket: &Path) -> String {
    let p = |sub: &str| toml_str(&dir.join(sub).to_string_lossy());
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|s| toml_str(s)).collect();
    format!(
        "version = 2\n\
         root = {}\n\
         state = {}\n\
         disabled_plugins = [{}]\n\n\
         [grpc]\n  address = {}\n\n\
         [ttrpc]\n  address = {}\n\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}\n",
        p("root"),
        p("state"),
        disabled.join(", "),
        toml_str(&socket.to_string_lossy()),
        toml_str(&format!("{}.ttrpc", socket.display())),
        p("opt"),
    )
}

/// A TOML basic string (JSON string syntax is valid TOML for these values).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Whether this `ctr` has `images pull --local` (containerd 1.7+: without
/// it, a pull may go through the daemon's transfer service).
fn ctr_has_local_flag() -> bool {
    static LOCAL: OnceLock<bool> = OnceLock::new();
    *LOCAL.get_or_init(|| {
        Command::new("ctr")
            .args(["images", "pull", "--help"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--local"))
    })
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// Path (relative to `root`, `/`-separated) to SHA-256 of every regular file
/// below `root`.
fn hash_tree(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let rel = entry.path().strip_prefix(root)?.to_string_lossy().into_owned();
                files.insert(rel, crate::sha256_file(entry.path())?);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_everything_under_the_directory() {
        let toml = config_toml(Path::new("/t/n0"), Path::new("/t/n0/containerd.sock"));
        assert!(toml.contains("root = \"/t/n0/root\""), "{toml}");
        assert!(toml.contains("address = \"/t/n0/containerd.sock.ttrpc\""), "{toml}");
        assert!(toml.contains("\"io.containerd.grpc.v1.cri\""), "{toml}");
        assert!(!toml.contains("/var/lib") && !toml.contains("/run/"), "{toml}");
    }

    #[test]
    fn hashes_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), b"abc").unwrap();
        std::fs::write(dir.path().join("g"), b"").unwrap();
        let files = hash_tree(dir.path()).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["a/b/f", "g"]);
        assert_eq!(files["a/b/f"], crate::sha256_hex(b"abc"));
    }
}
