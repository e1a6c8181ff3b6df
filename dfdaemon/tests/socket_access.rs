//! The download socket serves only root, the daemon's user and members of
//! `download.socket_group`, by the caller's kernel credentials: a socket
//! whose file mode was widened (bind-mounted into a container, chmod by
//! hand) still refuses everyone else, with a clear error.

mod support;

use std::os::unix::fs::PermissionsExt as _;

use support::Daemon;
use testkit::data::random_bytes;
use testkit::origin::{Behavior, Content, Origin};

/// `nobody`'s user and group IDs on Debian.
const NOBODY: u32 = 65534;
/// A group nobody is in.
const STRANGERS: u32 = 4242;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// dfget as `uid`:`gid` (no supplementary groups): exit code and stderr.
async fn dfget_as(uid: u32, gid: u32, socket: &std::path::Path, url: &str, out: &std::path::Path) -> (i32, String) {
    let run = support::dfget_as(Some((uid, gid)), socket, url, out, &[]).await;
    (run.code, run.stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_root_the_daemons_user_and_its_group_use_the_socket_whatever_its_mode() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run this test as root (it runs dfget as other users)");
        eprintln!("SKIPPED only_root_the_daemons_user_and_its_group_use_the_socket: needs root to switch users");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let group = NOBODY.to_string();
    let daemon = Daemon::start(dir.path(), &[("DFDAEMON__DOWNLOAD__SOCKET_GROUP", &group)]).await;
    let origin = Origin::start().await;
    origin.add("/f", Content::Bytes(random_bytes(64 << 10, 3)), Behavior::default());
    let url = origin.url("/f");
    // Given to the group, 0660.
    let meta = std::fs::metadata(&daemon.socket).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), NOBODY, "the socket's group");
    // Widen everything a caller passes through, as a careless mount would.
    let mut p = daemon.socket.clone();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    while p.pop() && p.starts_with(dir.path()) {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let outputs = dir.path().join("outputs");
    std::fs::create_dir(&outputs).unwrap();
    std::fs::set_permissions(&outputs, std::fs::Permissions::from_mode(0o777)).unwrap();

    let (code, stderr) = dfget_as(NOBODY, STRANGERS, &daemon.socket, &url, &outputs.join("stranger")).await;
    assert_ne!(code, 0, "a caller outside the group was served: {stderr}");
    assert!(
        stderr.contains("may not use this dfdaemon") && stderr.contains("download.socket_group"),
        "the refusal says why: {stderr}"
    );
    assert!(!outputs.join("stranger").exists());
    assert_eq!(origin.stats("/f").requests, 0, "a refused caller made the daemon fetch");

    let (code, stderr) = dfget_as(NOBODY, NOBODY, &daemon.socket, &url, &outputs.join("member")).await;
    assert_eq!(code, 0, "a member of the group was refused: {stderr}\n{}", daemon.log());
    assert_eq!(std::fs::read(outputs.join("member")).unwrap().len(), 64 << 10);
}
