//! What the manager's integration tests share: a manager running in process
//! on ephemeral ports ([`TestManager`]), on the system clock or on a clock the
//! test moves ([`manager::clock::ManualClock`]); the one REST client
//! ([`rest::Api`]); members kept alive over gRPC ([`members::LiveMember`]).
//! Fresh databases come from `testkit::db`, polling from `testkit::eventually`.

#![allow(dead_code)]

pub mod members;
pub mod rest;

use std::net::SocketAddr;
use std::time::Duration;

use darter_proto::manager::v1::manager_client::ManagerClient;
use manager::clock::Clock;
use manager::store::{MemberKind, MemberState, Store};
use manager::{Config, Listeners};
use testkit::eventually::{DEADLINE, START_DEADLINE, patience, try_poll};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

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
        Self::start_with_clock(Clock::system(), tweak).await
    }

    /// A manager on a fresh SQLite database reading `clock`, with `tweak`
    /// applied to its config.
    pub async fn start_with_clock(clock: Clock, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("manager.db").display());
        Self::start_on_clock(&url, Some(dir), clock, tweak).await
    }

    /// A manager on the database at `url`.
    pub async fn start_on(url: &str, dir: Option<tempfile::TempDir>, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_clock(url, dir, Clock::system(), tweak).await
    }

    /// A manager on the database at `url`, reading `clock`.
    pub async fn start_on_clock(
        url: &str,
        dir: Option<tempfile::TempDir>,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config =
            Config { database_url: url.to_owned(), expiry_interval: Duration::from_millis(50), ..Config::default() };
        config.auth.root_password = Some(ROOT_PASSWORD.into());
        // The membership and API tests speak plaintext gRPC; the trust tests
        // turn mutual TLS back on in `tweak`.
        config.tls.mode = darter_common::tls::TlsMode::Plaintext;
        tweak(&mut config);
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, rest_addr, metrics_addr) =
            (grpc.local_addr().unwrap(), rest.local_addr().unwrap(), metrics.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let listeners = Listeners { grpc, metrics, rest };
        let handle = tokio::spawn(manager::run_with(config, listeners, shutdown.clone(), clock));
        // The manager creates the schema and the root user; wait until it has.
        let store = try_poll("the manager's database to have the root user", START_DEADLINE, || async {
            anyhow::ensure!(!handle.is_finished(), "the manager stopped");
            let store = Store::open(url).await?;
            Ok(store.get_user_by_name("root").await.is_ok().then_some(store))
        })
        .await;
        let store = match store {
            Ok(s) => s,
            Err(e) if handle.is_finished() => panic!("{e}: {:?}", handle.await),
            Err(e) => panic!("{e}"),
        };
        Self { grpc: grpc_addr, rest: rest_addr, metrics: metrics_addr, store, shutdown, handle, _dir: dir }
    }

    /// A gRPC client, once the manager answers.
    pub async fn client(&self) -> ManagerClient<Channel> {
        let url = format!("http://{}", self.grpc);
        try_poll("the manager's gRPC API to answer", DEADLINE, || async {
            Ok(Some(ManagerClient::connect(url.clone()).await?))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A member's stored state.
    pub async fn state(&self, kind: MemberKind, id: u64) -> MemberState {
        self.store.get_member(kind, i64::try_from(id).unwrap()).await.unwrap().state
    }

    /// Stops the manager and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(patience(DEADLINE), self.handle).await.expect("manager stops in time").unwrap().unwrap();
    }
}
