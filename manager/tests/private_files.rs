//! Issue 14, attack 4 (root token forgery), against the real `manager`
//! binary: its SQLite database holds the generated JWT key, and a database
//! created 0644 let any local user read the key and mint a root token.
//!
//! The database (and so the journal SQLite creates next to it with its mode)
//! and the generated root password are 0600 in a data directory the manager makes 0700; where the test runs as
//! root, a process switched to `nobody` is shown unable to read them. A
//! database an older version left open to others is closed at the next start,
//! and the JWT key kept in it is replaced: a token minted with the key read
//! from the old file stops working.

mod support;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;
use support::rest::Api;
use testkit::eventually::DEADLINE;
use testkit::service::{ServiceProcess, ServiceSpec};

/// The manager's data directory under the test's directory (created by it).
fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// A manager with its database in `dir/data/` and no configured root
/// password, so it generates one into `dir/data/root-password`.
fn spec(dir: &Path) -> ServiceSpec {
    let data = data_dir(dir);
    let ip = Ipv4Addr::LOCALHOST.into();
    let mut spec = ServiceSpec::new("manager", env!("CARGO_BIN_EXE_manager"), dir)
        .listener("grpc", "--grpc-addr", ip)
        .listener("rest", "--rest-addr", ip)
        .listener("metrics", "--metrics-addr", ip);
    spec.args = vec!["--database-url".into(), format!("sqlite://{}?mode=rwc", data.join("manager.db").display())];
    spec.env = vec![("MANAGER__AUTH__ROOT_PASSWORD_FILE".into(), data.join("root-password").display().to_string())];
    spec
}

/// A test directory others may enter, so only the modes under test decide
/// who reads what is below it.
fn open_test_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether user `nobody` can read `path`; `None` when this process cannot
/// switch users (not root).
fn nobody_reads(path: &Path) -> Option<bool> {
    let status = std::process::Command::new("cat")
        .arg(path)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    Some(status.success())
}

/// Every file in `dir` with its mode.
fn files_in(dir: &Path) -> Vec<(String, u32)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), mode(&e.path()))
        })
        .collect();
    files.sort();
    files
}

/// A sign-in token for user 1 (root) signed with `key`, as an attacker who
/// read the key would mint it.
fn mint_root_token(key: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": "1", "jti": format!("minted-{now}"), "iat": now, "exp": now + 600});
    let key = jsonwebtoken::EncodingKey::from_secret(key.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// The JWT key the manager keeps in its database, read from the file.
async fn key_in(dir: &Path) -> String {
    let url = format!("sqlite://{}", data_dir(dir).join("manager.db").display());
    let store = manager::store::Store::open(&url).await.unwrap();
    let key = store.setting_or_init("jwt_secret", "not-there").await.unwrap();
    store.close().await;
    assert_ne!(key, "not-there", "the manager keeps its generated key in the database");
    key
}

#[tokio::test]
async fn the_database_and_the_root_password_are_readable_by_the_manager_user_only() {
    let dir = open_test_dir();
    let data = data_dir(dir.path());
    let m = ServiceProcess::start(spec(dir.path())).await.unwrap();
    let password = std::fs::read_to_string(data.join("root-password")).unwrap();
    let root = Api::at(m.addr("rest")).sign_in("root", password.trim()).await;
    // A write, through the journal.
    root.post("/clusters", json!({"name": "west"})).await.ok(StatusCode::CREATED);

    assert_eq!(mode(&data), 0o700, "the data directory the manager created");
    let files = files_in(&data);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    // SQLite's journal (`-journal`, or `-wal` and `-shm` in WAL mode) comes
    // and goes with writes, with the database file's mode.
    for expected in ["manager.db", "root-password"] {
        assert!(names.contains(&expected), "{expected} in {files:?}");
    }
    for (name, mode) in &files {
        assert_eq!(*mode, 0o600, "{name} is {mode:04o}: {files:?}");
    }

    // As another local user.
    let control = dir.path().join("control");
    std::fs::write(&control, "open to all").unwrap();
    set_mode(&control, 0o644);
    match nobody_reads(&control) {
        Some(true) => {
            for (name, _) in &files {
                assert_eq!(nobody_reads(&data.join(name)), Some(false), "nobody read {name}");
            }
            set_mode(&data, 0o755);
            for (name, _) in &files {
                assert_eq!(nobody_reads(&data.join(name)), Some(false), "nobody read {name} (mode 0600, open dir)");
            }
        }
        other => eprintln!("not checked as another user (cannot switch to nobody: {other:?})"),
    }
    drop(m);
}

#[tokio::test]
async fn a_database_left_open_by_an_older_version_is_closed_and_its_jwt_key_replaced() {
    let dir = open_test_dir();
    let data = data_dir(dir.path());
    let mut m = ServiceProcess::start(spec(dir.path())).await.unwrap();
    let password = std::fs::read_to_string(data.join("root-password")).unwrap().trim().to_owned();
    let anon = Api::at(m.addr("rest"));
    let session = anon.sign_in("root", &password).await;

    // The attack: whoever reads the key mints a root token.
    let minted = anon.with(&mint_root_token(&key_in(dir.path()).await));
    assert_eq!(minted.get("/users/me").await.ok(StatusCode::OK)["name"], "root");

    // What an older version left behind: everything open to other users.
    m.terminate(DEADLINE).await.unwrap();
    set_mode(&data, 0o755);
    for (name, _) in files_in(&data) {
        set_mode(&data.join(name), 0o644);
    }

    m.restart().await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for (name, mode) in files_in(&data) {
        assert_eq!(mode, 0o600, "{name} is {mode:04o} after the restart");
    }
    assert!(m.log().contains("JWT key kept in it was replaced"), "{}", m.log_tail(30));
    // The minted token and the sessions signed with the old key are over;
    // the password still signs in.
    minted.get("/users/me").await.unauthenticated();
    session.get("/users/me").await.unauthenticated();
    let again = anon.sign_in("root", &password).await;
    assert_eq!(again.get("/users/me").await.ok(StatusCode::OK)["name"], "root");

    // A start that finds nothing open keeps the key (and the sessions).
    m.terminate(DEADLINE).await.unwrap();
    m.restart().await.unwrap();
    assert_eq!(again.get("/users/me").await.ok(StatusCode::OK)["name"], "root");
}
