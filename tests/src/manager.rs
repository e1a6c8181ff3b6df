//! A real `manager` process on loopback: a SQLite database in its own
//! directory, free ports for gRPC, REST (and the console) and metrics, a
//! known root password, killed with SIGKILL when dropped. Used by the
//! end-to-end tests and the sandbox.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use darter_common::manager_client::{Managers, is_no_cluster};
use darter_proto::manager::v1 as pb;

use crate::cluster::free_port;
use crate::dfdaemon::tail;
use crate::process::ChildGuard;

/// How long the manager may take to answer gRPC after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The root user's name (created by the manager on first start).
pub const ROOT_USER: &str = "root";

/// A running manager.
#[derive(Debug)]
pub struct ManagerProcess {
    /// gRPC address (schedulers, seed peers, dfdaemons).
    pub grpc_addr: SocketAddr,
    /// REST API and console address.
    pub rest_addr: SocketAddr,
    /// Metrics and health address.
    pub metrics_addr: SocketAddr,
    /// The root user's password.
    pub root_password: String,
    /// Its log file.
    pub log_path: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The database, when not the SQLite file in `dir`.
    database_url: Option<String>,
    child: Option<ChildGuard>,
}

impl ManagerProcess {
    /// Starts `bin` with its database and log under `dir`, extra `env`
    /// (e.g. `MANAGER__KEEPALIVE_GRACE=2s`) and root password
    /// `root_password` (at least 8 bytes), and waits until it answers gRPC.
    pub async fn start(bin: &Path, dir: &Path, env: &[(String, String)], root_password: &str) -> anyhow::Result<Self> {
        Self::start_on(bin, dir, std::net::Ipv4Addr::LOCALHOST.into(), env, root_password).await
    }

    /// Like [`ManagerProcess::start`], listening on `ip`.
    pub async fn start_on(
        bin: &Path,
        dir: &Path,
        ip: std::net::IpAddr,
        env: &[(String, String)],
        root_password: &str,
    ) -> anyhow::Result<Self> {
        Self::launch(bin, dir, ip, None, env, root_password).await
    }

    /// Like [`ManagerProcess::start`], on the database at `database_url`
    /// (e.g. a `testkit::db::ScratchDb`'s) instead of a SQLite file in `dir`.
    pub async fn start_with_database(
        bin: &Path,
        dir: &Path,
        database_url: &str,
        env: &[(String, String)],
        root_password: &str,
    ) -> anyhow::Result<Self> {
        let ip = std::net::Ipv4Addr::LOCALHOST.into();
        Self::launch(bin, dir, ip, Some(database_url.to_owned()), env, root_password).await
    }

    async fn launch(
        bin: &Path,
        dir: &Path,
        ip: std::net::IpAddr,
        database_url: Option<String>,
        env: &[(String, String)],
        root_password: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let addr = || SocketAddr::new(ip, free_port());
        let mut m = Self {
            grpc_addr: addr(),
            rest_addr: addr(),
            metrics_addr: addr(),
            root_password: root_password.to_string(),
            log_path: dir.join("manager.log"),
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            env: env.to_vec(),
            database_url,
            child: None,
        };
        m.spawn().await?;
        Ok(m)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::options().create(true).append(true).open(&self.log_path)?;
        let child = Command::new(&self.bin)
            .args(["--grpc-addr", &self.grpc_addr.to_string()])
            .args(["--rest-addr", &self.rest_addr.to_string()])
            .args(["--metrics-addr", &self.metrics_addr.to_string()])
            .arg("--database-url")
            .arg(match &self.database_url {
                Some(url) => url.clone(),
                None => format!("sqlite://{}?mode=rwc", self.dir.join("manager.db").display()),
            })
            .env("MANAGER__AUTH__ROOT_PASSWORD", &self.root_password)
            .env("MANAGER__AUTH__ROOT_PASSWORD_FILE", self.dir.join("root-password"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let mut child = ChildGuard::new(child);
        let managers = self.managers();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if child.has_exited() {
                bail!("the manager exited at start\n--- manager log tail ---\n{}", self.log_tail(30));
            }
            // Any answer from the service itself (no cluster yet is one) means it serves.
            match managers.list_schedulers(probe()).await {
                Ok(_) => break,
                Err(s) if is_no_cluster(&s) => break,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(s) => bail!(
                    "the manager does not answer gRPC after {START_TIMEOUT:?}: {}\n--- manager log tail ---\n{}",
                    s.message(),
                    self.log_tail(30)
                ),
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// A client of its gRPC API.
    pub fn managers(&self) -> Managers {
        Managers::new(&[self.grpc_addr.to_string()]).expect("a valid address")
    }

    /// `ListSchedulers` for a host at 127.0.0.1 (the default cluster, unless scopes say otherwise).
    pub async fn list_schedulers(&self) -> Result<pb::ListSchedulersResponse, tonic::Status> {
        self.managers().list_schedulers(probe()).await.map(|a| a.response)
    }

    /// The console's URL.
    pub fn console_url(&self) -> String {
        format!("http://{}/console/", self.rest_addr)
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// Its exit status once it has exited on its own (`None` while it runs,
    /// and after [`ManagerProcess::kill`]).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.0.try_wait().ok().flatten()
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Starts it again on the same database and ports.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }
}

fn probe() -> pb::ListSchedulersRequest {
    pb::ListSchedulersRequest { hostname: "darter-testkit".into(), ip: "127.0.0.1".into(), ..Default::default() }
}

/// A random password for a sandbox's root user (16 letters and digits).
pub fn random_password() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}
