//! dfdaemon's config from the command line: the flags land in `--print-config`
//! under the keys they name, and old spellings of renamed keys and flags
//! still load.

use std::process::Output;

use darter_common::config::load;
use dfdaemon::config::{Config, ENV_PREFIX};

fn dfdaemon(args: &[&str], env: &[(&str, &str)]) -> Output {
    testkit::process::run_binary(env!("CARGO_BIN_EXE_dfdaemon"), args, env, "DFDAEMON__")
}

/// The printed config, loaded back as dfdaemon would load a file.
fn printed(out: &Output) -> Config {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &out.stdout).unwrap();
    load::<Config, _>(Some(f.path()), ENV_PREFIX, Vec::new(), &[]).unwrap()
}

#[test]
fn print_config_shows_every_flag_under_its_key() {
    let c = printed(&dfdaemon(
        &[
            "--print-config",
            "--data-dir",
            "/tmp/d",
            "--download-socket",
            "/tmp/d.sock",
            "--upload-grpc-addr",
            "127.0.0.1:5000",
            "--piece-addr",
            "127.0.0.1:5003",
            "--metrics-addr",
            "127.0.0.1:5002",
            "--proxy-addr",
            "127.0.0.1:5001",
            "--no-proxy",
            "--scheduler",
            "127.0.0.1:8002",
            "--scheduler",
            "[::1]:8002",
            "--manager",
            "m:65003",
            "--manager",
            "[::1]:65003",
            "--seed",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ],
        &[],
    ));
    assert_eq!((c.storage.data_dir.to_str(), c.download.socket.to_str()), (Some("/tmp/d"), Some("/tmp/d.sock")));
    assert_eq!(c.upload.grpc_addr.to_string(), "127.0.0.1:5000");
    assert_eq!(c.upload.piece_addr.to_string(), "127.0.0.1:5003");
    assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:5002");
    assert_eq!((c.proxy.addr.to_string(), c.proxy.enabled), ("127.0.0.1:5001".into(), false));
    assert_eq!(c.scheduler.addrs, ["127.0.0.1:8002", "[::1]:8002"]);
    assert_eq!(c.manager.addrs, ["m:65003", "[::1]:65003"]);
    assert!(c.host.seed);
    assert_eq!((c.log.level.as_str(), c.log.format), ("debug", darter_common::telemetry::LogFormat::Json));
}

/// `--upload-addr` (the flag's old spelling), `metrics.addr` (the key's) and
/// a single `manager.addrs` string still load.
#[test]
fn old_config_spellings_still_load() {
    let c = printed(&dfdaemon(&["--print-config", "--upload-addr", "127.0.0.1:5000"], &[]));
    assert_eq!(c.upload.grpc_addr.to_string(), "127.0.0.1:5000");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dfdaemon.yaml");
    std::fs::write(&file, "metrics:\n  addr: 127.0.0.1:5002\nmanager:\n  addrs: m:65003\n").unwrap();
    let c = printed(&dfdaemon(&["--print-config", "--config", file.to_str().unwrap()], &[]));
    assert_eq!(
        (c.metrics_addr.to_string(), c.manager.addrs.as_slice()),
        ("127.0.0.1:5002".into(), &["m:65003".to_string()][..])
    );
    let c = printed(&dfdaemon(
        &["--print-config"],
        &[("DFDAEMON__METRICS__ADDR", "127.0.0.1:6002"), ("DFDAEMON__MANAGER__ADDRS", "env:65003")],
    ));
    assert_eq!(
        (c.metrics_addr.to_string(), c.manager.addrs.as_slice()),
        ("127.0.0.1:6002".into(), &["env:65003".to_string()][..])
    );
}

#[test]
fn bad_host_config_exits_2_naming_the_field() {
    for (env, field) in [("not-an-ip", "host.ip"), ("0.0.0.0", "host.ip")] {
        let out = dfdaemon(&["--print-config"], &[("DFDAEMON__HOST__IP", env)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}: {stderr}");
        assert!(stderr.starts_with("dfdaemon: ") && stderr.contains(field), "{env}: {stderr}");
    }
    let out = dfdaemon(&["--print-config"], &[("DFDAEMON__HOST__IP", "10.0.0.7")]);
    assert_eq!(printed(&out).host.ip, Some("10.0.0.7".parse().unwrap()));
    let out = dfdaemon(&["--print-config"], &[("DFDAEMON__HOST__HOSTNAME", " ")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("host.hostname"));
}
