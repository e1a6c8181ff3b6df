//! What the manager's integration tests share: a manager running in process
//! on ephemeral ports ([`TestManager`]). Fresh databases come from `testkit::db`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use darter_proto::manager::v1::manager_client::ManagerClient;
use manager::store::{MemberKind, MemberState, Store};
use manager::{Config, Listeners};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// How long any single expectation may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The root password every test manager starts with.
pub const ROOT_PASSWORD: &str = "root-password-for-tests";

/// A manager serving on 127.0.0.1 ephemeral ports.
pub struct TestManager {
    pub grpc: SocketAddr,
    pub rest: SocketAddr,
    pub metrics: SocketAddr,
    /// A second handle on the manager's database, for setup and checks.
    pub store: Store,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestManager {
    /// A manager on a fresh SQLite database.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A manager on a fresh SQLite database, with `tweak` applied to its config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("manager.db").display());
        Self::start_on(&url, Some(dir), tweak).await
    }

    /// A manager on the database at `url`.
    pub async fn start_on(url: &str, dir: Option<tempfile::TempDir>, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config =
            Config { database_url: url.to_owned(), expiry_interval: Duration::from_millis(50), ..Config::default() };
        config.auth.root_password = Some(ROOT_PASSWORD.into());
        tweak(&mut config);
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, rest_addr, metrics_addr) =
            (grpc.local_addr().unwrap(), rest.local_addr().unwrap(), metrics.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(manager::run(config, Listeners { grpc, metrics, rest }, shutdown.clone()));
        let store = loop {
            // The manager creates the schema; wait until it has.
            match Store::open(url).await {
                Ok(s) if s.get_user_by_name("root").await.is_ok() => break s,
                _ if handle.is_finished() => panic!("manager stopped: {:?}", handle.await),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        Self { grpc: grpc_addr, rest: rest_addr, metrics: metrics_addr, store, shutdown, handle, _dir: dir }
    }

    /// A gRPC client, once the manager answers.
    pub async fn client(&self) -> ManagerClient<Channel> {
        let start = Instant::now();
        loop {
            match ManagerClient::connect(format!("http://{}", self.grpc)).await {
                Ok(c) => return c,
                Err(e) if start.elapsed() > DEADLINE => panic!("manager does not answer: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// A member's stored state.
    pub async fn state(&self, kind: MemberKind, id: u64) -> MemberState {
        self.store.get_member(kind, i64::try_from(id).unwrap()).await.unwrap().state
    }

    /// `http://127.0.0.1:<port>/api/v1` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.rest)
    }

    /// Stops the manager and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.handle).await.expect("manager stops in time").unwrap().unwrap();
    }
}

/// An HTTP client (the process's rustls crypto provider installed first).
pub fn http() -> reqwest::Client {
    darter_common::install_crypto_provider();
    reqwest::Client::new()
}

/// Polls `check` until it holds or [`DEADLINE`] passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
