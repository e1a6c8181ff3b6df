//! `darter-bench backsource` end to end with the real dfdaemon and dfget
//! (built next to this test by `cargo nextest run --workspace`) and curl.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BENCH: &str = env!("CARGO_BIN_EXE_darter-bench");

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH).arg("backsource").args(args).output().unwrap()
}

/// curl is a prerequisite of the benchmark (and installed by `.ci/run`).
fn require_curl() {
    assert!(Command::new("curl").arg("--version").output().is_ok(), "curl is required: apt-get install curl");
}

fn real(name: &str) -> String {
    testkit::dfdaemon::sibling_binary(name).unwrap_or_else(|e| panic!("{e:#}")).display().to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn missing_dfget_says_how_to_build_it() {
    let work = tempfile::tempdir().unwrap();
    let daemon = real("dfdaemon");
    let out =
        bench(&["--dfdaemon", &daemon, "--dfget", "/nonexistent/dfget", "--workdir", work.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("dfget not found at /nonexistent/dfget"), "{stderr}");
    assert!(stderr.contains("cargo build --release --workspace --bins"), "{stderr}");
}

#[test]
fn rejects_bad_sizes() {
    let out = bench(&["--size", "10MB"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit"));
}

#[test]
fn curl_only_run_writes_table_and_json() {
    require_curl();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap();
    let out = bench(&["--curl-only", "--size", "3MiB", "--runs", "2", "--workdir", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| median |"), "{stdout}");
    let report = json(&work.path().join("backsource.json"));
    assert_eq!(report["size_bytes"], 3 << 20);
    assert_eq!(report["runs"].as_array().unwrap().len(), 2);
    assert!(report["curl_median_mib_s"].as_f64().unwrap() > 0.0);
    // The scratch directory is gone; only the JSON stays.
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["backsource.json"]);
}

#[test]
fn full_run_with_the_real_binaries_reports_a_ratio() {
    require_curl();
    let work = tempfile::tempdir().unwrap();
    let (daemon, dfget) = (real("dfdaemon"), real("dfget"));
    let json_path = work.path().join("out.json");
    let out = bench(&[
        "--size",
        "1MiB",
        "--runs",
        "2",
        "--dfdaemon",
        &daemon,
        "--dfget",
        &dfget,
        "--workdir",
        work.path().to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("(target >= 0.9x)"), "{stdout}");
    let report = json(&json_path);
    assert!(report["ratio"].as_f64().unwrap() > 0.0);
    for run in report["runs"].as_array().unwrap() {
        let sent = run["dfget_origin_bytes"].as_u64().unwrap();
        assert!((1 << 20..=(1 << 20) + 1).contains(&sent), "one copy from the origin (plus the 1-byte probe): {sent}");
    }
}

#[test]
fn daemon_that_dies_is_reported_with_its_log() {
    require_curl();
    let work = tempfile::tempdir().unwrap();
    let daemon = script(work.path(), "dfdaemon", "#!/bin/sh\necho 'boom: bad config'\nexit 1\n");
    let dfget = real("dfget");
    let out = bench(&[
        "--size",
        "64KiB",
        "--runs",
        "1",
        "--dfdaemon",
        daemon.to_str().unwrap(),
        "--dfget",
        &dfget,
        "--workdir",
        work.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("dfdaemon exited at start"), "{stderr}");
    assert!(stderr.contains("boom: bad config"), "{stderr}");
}
