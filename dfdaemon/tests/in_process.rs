//! dfdaemon run in this process through `dfdaemon::run`, on listeners bound to
//! `127.0.0.1:0` and a socket in a temporary directory: it serves, answers
//! `/healthz`, and stops on its own when told to, within the drain deadline
//! (no process to kill).

use std::net::SocketAddr;

use darter_proto::dfdaemon::v1::dfdaemon_download_client::DfdaemonDownloadClient;
use dfdaemon::config::Config;
use dfdaemon::{DRAIN_TIMEOUT, Daemon, Listeners};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

/// A config under `dir` with every TCP listener on an ephemeral loopback port.
fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = dir.join("data");
    config.download.socket = dir.join("dfdaemon.sock");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.upload.grpc_addr = any;
    config.upload.piece_addr = any;
    config.metrics_addr = any;
    config.proxy.enabled = true;
    config.proxy.addr = any;
    config.tls.mode = darter_common::tls::TlsMode::Plaintext;
    config
}

/// `GET /healthz`: the status code, or `None` when nothing accepts.
async fn healthz(addr: SocketAddr) -> Option<u16> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: dfdaemon\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await.ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_serves_until_cancelled_then_drains_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let socket = config.download.socket.clone();
    let listeners = Listeners::bind(&config).await.unwrap();
    let metrics = listeners.metrics.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(dfdaemon::run(config, listeners, shutdown.clone()));

    testkit::eventually::eventually("/healthz 200", || async { healthz(metrics).await == Some(200) }).await;
    // The download API answers on the socket.
    let channel = dfdaemon::dfget::connect(&socket).await.expect("connect to the download socket");
    let listed = DfdaemonDownloadClient::new(channel).list_tasks(()).await.expect("list tasks").into_inner();
    assert!(listed.tasks.is_empty(), "{listed:?}");

    shutdown.cancel();
    let stopped = tokio::time::timeout(DRAIN_TIMEOUT, daemon)
        .await
        .expect("dfdaemon stopped within the drain deadline")
        .expect("run did not panic");
    stopped.expect("a requested stop is not an error");
    assert!(!socket.exists(), "the download socket is removed");
    assert_eq!(healthz(metrics).await, None, "the metrics server is closed");
}

#[tokio::test]
async fn unusable_storage_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // A file where the data directory should be.
    std::fs::write(dir.path().join("data"), b"not a directory").unwrap();
    config.storage.data_dir = dir.path().join("data");
    let listeners = Listeners::bind(&config).await.unwrap();
    let metrics = listeners.metrics.local_addr().unwrap();
    let err = Daemon::build(config, listeners).await.expect_err("storage under a file cannot open");
    let tasks = dir.path().join("data/tasks");
    assert!(format!("{err:#}").contains(&format!("create {}", tasks.display())), "{err:#}");
    assert_eq!(healthz(metrics).await, None, "nothing was served");
}

/// `shutdown(2)` of a listening socket the daemon serves: every later
/// `accept` on it fails (`EINVAL`), as when a listener dies under a server.
#[allow(unsafe_code)]
fn break_listener(fd: std::os::fd::RawFd) {
    // SAFETY: `fd` is the daemon's listening socket, open while it runs.
    let r = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_piece_server_fails_healthz_and_stops_the_daemon_naming_it() {
    use std::os::fd::AsRawFd as _;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let listeners = Listeners::bind(&config).await.unwrap();
    let metrics = listeners.metrics.local_addr().unwrap();
    let piece_fd = listeners.piece.as_raw_fd();
    let daemon = tokio::spawn(dfdaemon::run(config, listeners, CancellationToken::new()));
    testkit::eventually::eventually("/healthz 200", || async { healthz(metrics).await == Some(200) }).await;

    break_listener(piece_fd);
    // Draining (503), then gone: either way no longer healthy.
    testkit::eventually::eventually("/healthz to fail", || async { healthz(metrics).await != Some(200) }).await;
    let stopped = tokio::time::timeout(DRAIN_TIMEOUT * 2, daemon)
        .await
        .expect("dfdaemon stopped on its own")
        .expect("run did not panic");
    let err = stopped.expect_err("a dead server is an error (the binary exits 1)");
    assert!(format!("{err:#}").contains("the piece server failed"), "{err:#}");
}

#[tokio::test]
async fn a_socket_directory_it_creates_is_for_its_user_and_group_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.download.socket = dir.path().join("run/darter/dfdaemon.sock");
    let listeners = Listeners::bind(&config).await.unwrap();
    for created in ["run", "run/darter"] {
        let mode = std::fs::metadata(dir.path().join(created)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !dfdaemon::SOCKET_DIR_MODE, 0, "{created}: {mode:o}");
        assert_eq!(mode & 0o007, 0, "{created}: nothing for others");
    }
    let socket = std::fs::metadata(&config.download.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(socket, 0o660);
    drop(listeners);
}
