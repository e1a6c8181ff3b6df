//! The daemon's life around the downloads: health and metrics, graceful
//! shutdown, a full disk.

mod support;

use std::process::Command;

use support::{Daemon, raw_get};
use testkit::data::random_bytes;
use testkit::metrics::{scrape, value};
use testkit::origin::{Behavior, Content, Origin};

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_tell_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    // The kit returned once /healthz answered 200; it still does.
    let (status, _, body) = raw_get(daemon.metrics_port, "GET", "/healthz");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let data = random_bytes(1 << 20, 11);
    origin.add("/m", Content::Bytes(data), Behavior::default());
    for _ in 0..2 {
        let r = daemon.dfget(&origin.url("/m"), &dir.path().join("m"), &[]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let text = scrape(daemon.metrics_addr()).await.unwrap_or_else(|e| panic!("{e:#}"));
    for (series, expected) in [
        ("dfdaemon_download_bytes_total{source=\"origin\"}", 1048576.0),
        ("dfdaemon_download_bytes_total{source=\"local\"}", 1048576.0),
        ("dfdaemon_downloads_total{result=\"success\"}", 2.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]).await;
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}");
    assert!(!daemon.socket.exists(), "socket removed on shutdown");
    assert!(daemon.log().contains("dfdaemon stopped"));
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
}

/// Mounts a small tmpfs for the daemon's data; unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs on {}", path.display());
        SmallDisk(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_clearly_and_frees_what_it_took() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run this test as root (it mounts a tmpfs)");
        eprintln!("SKIPPED a_full_disk_fails_clearly_and_frees_what_it_took: needs root to mount a tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _disk = SmallDisk::mount(&dir.path().join("data"), "4m");
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    origin.add("/big", Content::Bytes(random_bytes(8 << 20, 12)), Behavior::default());
    let out = dir.path().join("big");
    let r = daemon.dfget(&origin.url("/big"), &out, &[]).await;
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("no space left"), "{}", r.stderr);
    assert!(!out.exists());
    // The partial task was dropped, so a file that fits still downloads.
    let small = random_bytes(1 << 20, 13);
    origin.add("/small", Content::Bytes(small.clone()), Behavior::default());
    let r = daemon.dfget(&origin.url("/small"), &dir.path().join("small"), &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read(dir.path().join("small")).unwrap() == small);
}
