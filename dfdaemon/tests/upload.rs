//! The piece data server serves verified pieces of known tasks by ID and
//! number, and refuses everything else.

mod support;

use support::{Daemon, raw_get};
use testkit::data::{random_bytes, sha256_hex};
use testkit::origin::{Behavior, Content, Origin};

#[tokio::test(flavor = "multi_thread")]
async fn serves_known_pieces_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[]).await;
    let data = random_bytes(600 * 1024, 10);
    let digest = format!("sha256:{}", sha256_hex(&data));
    origin.add("/f", Content::Bytes(data.clone()), Behavior::default());
    let r = daemon.dfget(&origin.url("/f"), &dir.path().join("f"), &["--digest", &digest]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let port = daemon.piece_port;

    let (status, head, body) = raw_get(port, "GET", &format!("/v1/tasks/{digest}/pieces/1"));
    assert_eq!(status, 200);
    assert_eq!(body, &data[256 * 1024..512 * 1024]);
    assert!(
        head.to_ascii_lowercase().contains(&format!("x-darter-piece-digest: sha256:{}", sha256_hex(&body))),
        "{head}"
    );

    let unknown = format!("sha256:{}", "1".repeat(64));
    for (path, want) in [
        (format!("/v1/tasks/{unknown}/pieces/0"), 404),
        // Past the end of the 3-piece task: refused as out of range, not looked up.
        (format!("/v1/tasks/{digest}/pieces/3"), 400),
        (format!("/v1/tasks/{digest}/pieces/4294967295"), 400),
        (format!("/v1/tasks/{digest}/pieces/-1"), 400),
        (format!("/v1/tasks/{digest}/pieces/99999999999"), 400),
        (format!("/v1/tasks/{digest}/pieces/zero"), 400),
        ("/v1/tasks/../../etc/passwd/pieces/0".to_string(), 404),
        ("/v1/tasks/%2e%2e%2fetc%2fpasswd/pieces/0".to_string(), 400),
        ("/v1/tasks/sha256:..%2f..%2fcontent/pieces/0".to_string(), 400),
        (format!("/v1/tasks/{digest}/content"), 404),
        ("/etc/passwd".to_string(), 404),
    ] {
        let (status, _, _) = raw_get(port, "GET", &path);
        assert_eq!(status, want, "{path}");
    }
    let (_, _, body) = raw_get(port, "GET", &format!("/v1/tasks/{digest}/pieces/4294967295"));
    assert_eq!(String::from_utf8_lossy(&body), "piece number out of range\n");
    let (status, _, _) = raw_get(port, "DELETE", &format!("/v1/tasks/{digest}/pieces/0"));
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dfdaemon.yaml");
    std::fs::write(&cfg, "storage:\n  gc:\n    high_watermark: 2\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dfdaemon")).arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("storage.gc.high_watermark"), "{stderr}");
    std::fs::write(&cfg, "upload:\n  slots: many\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dfdaemon")).arg("--config").arg(&cfg).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("upload.slots"), "{}", String::from_utf8_lossy(&out.stderr));
}
