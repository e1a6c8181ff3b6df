//! `darter-bench backsource` end to end, with shell stand-ins for dfdaemon
//! and dfget (the real ones are exercised by the benchmark itself).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BENCH: &str = env!("CARGO_BIN_EXE_darter-bench");

/// A dfdaemon stand-in: creates its socket path and idles like a daemon.
const FAKE_DAEMON: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    --download-socket) sock="$2"; shift 2 ;;
    --data-dir|--upload-addr|--metrics-addr) shift 2 ;;
    *) echo "unexpected argument $1"; exit 2 ;;
  esac
done
touch "$sock"
exec sleep 600
"#;

/// A dfget stand-in: checks the expected arguments, then downloads with curl.
const FAKE_DFGET: &str = r#"#!/bin/sh
[ "$2" = -O ] && [ "$4" = --socket ] && [ -e "$5" ] && [ "$6" = --no-progress ] || exit 2
exec curl -sS -o "$3" "$1"
"#;

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .arg("backsource")
        .args(args)
        .output()
        .unwrap()
}

fn have_curl() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !found {
        eprintln!("curl not installed; skipping");
    }
    found
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn missing_dfget_says_how_to_build_it() {
    let work = tempfile::tempdir().unwrap();
    let daemon = script(work.path(), "dfdaemon", FAKE_DAEMON);
    let out = bench(&[
        "--dfdaemon",
        daemon.to_str().unwrap(),
        "--dfget",
        "/nonexistent/dfget",
        "--workdir",
        work.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("dfget not found at /nonexistent/dfget"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cargo build --release --workspace --bins"),
        "{stderr}"
    );
}

#[test]
fn rejects_bad_sizes() {
    let out = bench(&["--size", "10MB"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit"));
}

#[test]
fn curl_only_run_writes_table_and_json() {
    if !have_curl() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap();
    let out = bench(&[
        "--curl-only",
        "--size",
        "3MiB",
        "--runs",
        "2",
        "--workdir",
        dir,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| median |"), "{stdout}");
    let report = json(&work.path().join("backsource.json"));
    assert_eq!(report["size_bytes"], 3 << 20);
    assert_eq!(report["runs"].as_array().unwrap().len(), 2);
    assert!(report["curl_median_mib_s"].as_f64().unwrap() > 0.0);
    // The scratch directory is gone; only the JSON stays.
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["backsource.json"]);
}

#[test]
fn full_run_with_stand_ins_reports_a_ratio() {
    if !have_curl() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let bins = tempfile::tempdir().unwrap();
    let daemon = script(bins.path(), "dfdaemon", FAKE_DAEMON);
    let dfget = script(bins.path(), "dfget", FAKE_DFGET);
    let json_path = work.path().join("out.json");
    let out = bench(&[
        "--size",
        "1MiB",
        "--runs",
        "2",
        "--dfdaemon",
        daemon.to_str().unwrap(),
        "--dfget",
        dfget.to_str().unwrap(),
        "--workdir",
        work.path().to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(target >= 0.9x)"), "{stdout}");
    let report = json(&json_path);
    assert!(report["ratio"].as_f64().unwrap() > 0.0);
    for run in report["runs"].as_array().unwrap() {
        assert_eq!(
            run["dfget_origin_bytes"],
            1 << 20,
            "one copy from the origin"
        );
    }
}

#[test]
fn daemon_that_dies_is_reported_with_its_log() {
    if !have_curl() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let daemon = script(
        work.path(),
        "dfdaemon",
        "#!/bin/sh\necho 'boom: bad config'\nexit 1\n",
    );
    let dfget = script(work.path(), "dfget", FAKE_DFGET);
    let out = bench(&[
        "--size",
        "64KiB",
        "--runs",
        "1",
        "--dfdaemon",
        daemon.to_str().unwrap(),
        "--dfget",
        dfget.to_str().unwrap(),
        "--workdir",
        work.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("dfdaemon exited before creating its socket"),
        "{stderr}"
    );
    assert!(stderr.contains("boom: bad config"), "{stderr}");
}
