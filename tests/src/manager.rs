//! A real `manager` process on loopback: a SQLite database in its own
//! directory, gRPC, REST (and the console) and metrics on ports the kernel
//! picks, a known root password, killed with SIGKILL when dropped. Used by the
//! end-to-end tests and the sandbox.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use darter_common::manager_client::Managers;
use darter_common::tls::{Role, Transport};

use crate::pki::Join;
use darter_proto::manager::v1 as pb;

use crate::service::{ServiceProcess, ServiceSpec};

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
    process: ServiceProcess,
    /// The kit's own enrolled client (see [`ManagerProcess::managers`]).
    client: std::sync::OnceLock<Transport>,
    /// Started with `MANAGER__TLS__MODE=plaintext`: no CA, no enrollment.
    plaintext: bool,
}

impl ManagerProcess {
    /// Starts `bin` with its database and log under `dir`, extra `env`
    /// (e.g. `MANAGER__KEEPALIVE_GRACE=2s`) and root password
    /// `root_password` (at least 8 bytes), and waits until it is ready.
    pub async fn start(bin: &Path, dir: &Path, env: &[(String, String)], root_password: &str) -> anyhow::Result<Self> {
        Self::start_on(bin, dir, std::net::Ipv4Addr::LOCALHOST.into(), env, root_password).await
    }

    /// Like [`ManagerProcess::start`], listening on `ip`.
    pub async fn start_on(
        bin: &Path,
        dir: &Path,
        ip: IpAddr,
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
        Self::launch(bin, dir, ip, Some(database_url), env, root_password).await
    }

    async fn launch(
        bin: &Path,
        dir: &Path,
        ip: IpAddr,
        database_url: Option<&str>,
        env: &[(String, String)],
        root_password: &str,
    ) -> anyhow::Result<Self> {
        let mut spec = ServiceSpec::new("manager", bin, dir)
            .listener("grpc", "--grpc-addr", ip)
            .listener("rest", "--rest-addr", ip)
            .listener("metrics", "--metrics-addr", ip);
        let sqlite = || format!("sqlite://{}?mode=rwc", dir.join("manager.db").display());
        spec.args = vec!["--database-url".into(), database_url.map_or_else(sqlite, str::to_owned)];
        spec.env = vec![
            ("MANAGER__AUTH__ROOT_PASSWORD".into(), root_password.into()),
            ("MANAGER__AUTH__ROOT_PASSWORD_FILE".into(), dir.join("root-password").display().to_string()),
        ];
        spec.env.extend_from_slice(env);
        let plaintext = env.iter().any(|(k, v)| k == "MANAGER__TLS__MODE" && v == "plaintext");
        let process = ServiceProcess::start(spec).await?;
        Ok(Self {
            grpc_addr: process.addr("grpc"),
            rest_addr: process.addr("rest"),
            metrics_addr: process.addr("metrics"),
            root_password: root_password.to_string(),
            log_path: process.log_path.clone(),
            process,
            client: std::sync::OnceLock::new(),
            plaintext,
        })
    }

    /// A sign-in token of the root user.
    pub async fn root_token(&self) -> anyhow::Result<String> {
        let body = serde_json::json!({ "name": ROOT_USER, "password": self.root_password });
        let (status, answer) =
            crate::http::json(self.rest_addr, "POST", "/api/v1/users/signin", None, Some(&body)).await?;
        anyhow::ensure!(status == 200, "sign-in as root: {status} {answer}");
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("sign-in answer without a token: {answer}"))
    }

    /// Sends `method path` to its REST API as root; answers the status and
    /// the JSON body.
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let token = self.root_token().await?;
        crate::http::json(self.rest_addr, method, path, Some(&token), body).await
    }

    /// A new join token for `role` (`scheduler`, `seed_peer`, `peer`) of
    /// `cluster_id` (the default cluster when `None`), any number of uses.
    pub async fn join(&self, role: &str, cluster_id: Option<i64>) -> anyhow::Result<Join> {
        self.create_join_token(&serde_json::json!({ "role": role, "cluster_id": cluster_id, "description": "testkit" }))
            .await
    }

    /// A new join token created with `request` (the body of
    /// `POST /api/v1/join-tokens`: role, cluster_id, ttl, max_uses).
    pub async fn create_join_token(&self, request: &serde_json::Value) -> anyhow::Result<Join> {
        let (status, answer) = self.rest("POST", "/api/v1/join-tokens", Some(request)).await?;
        anyhow::ensure!(status == 201, "creating a join token {request}: {status} {answer}");
        let field =
            |k: &str| answer[k].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no {k} in {answer}"));
        Ok(Join { token: field("join_token")?, ca_cert_hash: field("ca_cert_hash")? })
    }

    /// Enrolls a member in this process (a peer named `darter-testkit`
    /// unless told otherwise) and returns its transport, for tests that call
    /// the cluster's gRPC APIs themselves.
    pub async fn enroll(&self, role: Role, host: &str) -> anyhow::Result<Transport> {
        let join = self.join(role.as_str(), None).await?;
        self.enroll_with(&join, role, host).await
    }

    /// Enrolls a member named `host` as `role` in this process with `join`.
    pub async fn enroll_with(&self, join: &Join, role: Role, host: &str) -> anyhow::Result<Transport> {
        let tls = darter_common::tls::TlsConfig {
            join_token: Some(join.token.clone()),
            ca_cert_hash: Some(join.ca_cert_hash.clone()),
            ..Default::default()
        };
        let addrs = [self.grpc_addr.to_string()];
        let member = darter_common::tls::enroll::Member {
            tls: &tls,
            section: "tls",
            role,
            host,
            manager_addrs: &addrs,
            state_dir: None,
            connect_timeout: std::time::Duration::from_secs(5),
        };
        Ok(darter_common::tls::enroll::establish(&member).await.map_err(anyhow::Error::msg)?.transport)
    }

    /// A client of its gRPC API, enrolled as a peer (once per process;
    /// plaintext when the manager runs in plaintext mode).
    pub async fn managers(&self) -> anyhow::Result<Managers> {
        let transport = match self.client.get() {
            Some(t) => t.clone(),
            None if self.plaintext => Transport::Plaintext,
            None => {
                let t = self.enroll(Role::Peer, "darter-testkit").await?;
                self.client.get_or_init(|| t).clone()
            }
        };
        Managers::new(&[self.grpc_addr.to_string()], &transport).map_err(anyhow::Error::msg)
    }

    /// `ListSchedulers` for a host at 127.0.0.1 (the default cluster, unless scopes say otherwise).
    pub async fn list_schedulers(&self) -> Result<pb::ListSchedulersResponse, tonic::Status> {
        let managers = self.managers().await.map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
        managers.list_schedulers(probe()).await.map(|a| a.response)
    }

    /// The console's URL.
    pub fn console_url(&self) -> String {
        format!("http://{}/console/", self.rest_addr)
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Its exit status once it has exited on its own (`None` while it runs,
    /// and after [`ManagerProcess::kill`]).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exit_status()
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same database and addresses.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart().await
    }

    /// Sends SIGTERM and waits for it to exit (gracefully: 0).
    pub async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.process.terminate(crate::eventually::DEADLINE).await
    }

    /// Its whole log.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
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
