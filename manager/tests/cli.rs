//! The `manager` binary's flags: `--print-config` prints the effective config
//! as YAML that loads back, secrets left out; flags and env land in it.

use std::process::Output;

use darter_common::config::load;
use manager::config::{Config, ENV_PREFIX};

fn manager(args: &[&str], env: &[(&str, &str)]) -> Output {
    testkit::process::run_binary(env!("CARGO_BIN_EXE_manager"), args, env, "MANAGER__")
}

/// Loads `yaml` as a config file, as the manager would.
fn load_back(yaml: &[u8]) -> Config {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), yaml).unwrap();
    load::<Config, _>(Some(f.path()), ENV_PREFIX, Vec::new(), &[]).unwrap()
}

#[test]
fn print_config_prints_yaml_that_loads_back() {
    let out = manager(
        &[
            "--print-config",
            "--grpc-addr",
            "127.0.0.1:9003",
            "--rest-addr",
            "127.0.0.1:9080",
            "--metrics-addr",
            "127.0.0.1:9081",
            "--database-url",
            "sqlite:///nonexistent-dir/m.db?mode=rwc",
            "--redis-url",
            "redis://127.0.0.1:6379/2",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ],
        &[("MANAGER__KEEPALIVE_GRACE", "42s")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = load_back(&out.stdout);
    assert_eq!(
        (c.grpc_addr.to_string(), c.rest_addr.to_string(), c.metrics_addr.to_string()),
        ("127.0.0.1:9003".into(), "127.0.0.1:9080".into(), "127.0.0.1:9081".into())
    );
    assert_eq!(c.database_url, "sqlite:///nonexistent-dir/m.db?mode=rwc");
    assert_eq!(c.cache.redis_url.as_deref(), Some("redis://127.0.0.1:6379/2"));
    assert_eq!((c.log.level.as_str(), c.log.format), ("debug", darter_common::telemetry::LogFormat::Json));
    assert_eq!(c.keepalive_grace, std::time::Duration::from_secs(42));
    // Printing neither starts the manager nor creates the SQLite directory.
    assert!(!std::path::Path::new("/nonexistent-dir").exists());
    // The defaults print and load back as the defaults.
    let out = manager(&["--print-config"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (printed, default) = (load_back(&out.stdout), Config::default());
    assert_eq!(serde_yaml_ng::to_string(&printed).unwrap(), serde_yaml_ng::to_string(&default).unwrap());
}

#[test]
fn print_config_leaves_secrets_out_and_says_so() {
    let password = "hunter2hunter2";
    let secret = "k".repeat(40);
    let out = manager(
        &["--print-config"],
        &[("MANAGER__AUTH__ROOT_PASSWORD", password), ("MANAGER__AUTH__JWT_SECRET", &secret)],
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(password) && !stdout.contains(&secret), "{stdout}");
    assert!(stderr.contains("auth.root_password, auth.jwt_secret set but not printed"), "{stderr}");
    let c = load_back(&out.stdout);
    assert!(c.auth.root_password.is_none() && c.auth.jwt_secret.is_none());
}

#[test]
fn bad_config_exits_2_naming_the_field() {
    let out = manager(&["--print-config", "--redis-url", "http://x"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("manager: ") && stderr.contains("cache.redis_url"), "{stderr}");
    let out = manager(&["--print-config", "--log-format", "xml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.format"));
}
