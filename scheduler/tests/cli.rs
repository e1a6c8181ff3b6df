//! The `scheduler` binary: bad config exits 2 naming the field; flags land in the config.

fn scheduler(args: &[&str]) -> std::process::Output {
    scheduler_with(args, &[])
}

fn scheduler_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    testkit::process::run_binary(env!("CARGO_BIN_EXE_scheduler"), args, env, "SCHEDULER__")
}

fn with_config(text: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    scheduler(&args)
}

#[test]
fn bad_config_exits_2_naming_the_field() {
    for (yaml, field) in [
        ("scheduling:\n  candidate_parent_limit: 0\n", "scheduling.candidate_parent_limit"),
        ("gc:\n  host_ttl: soon\n", "gc.host_ttl"),
        ("seed_peers:\n  - ip: 10.0.0.1\n    port: 0\n", "seed_peers[0].port"),
        ("scheduling:\n  back_to_source: 3\n", "back_to_source"),
    ] {
        let out = with_config(yaml, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(stderr.starts_with("scheduler: ") && stderr.contains(field), "{yaml}: {stderr}");
    }
}

#[test]
fn flags_override_the_file() {
    let out = with_config(
        "seed_peers:\n  - ip: 10.0.0.9\n",
        &[
            "--grpc-addr",
            "127.0.0.1:9002",
            "--seed-peer",
            "10.0.0.1:4000",
            "--seed-peer",
            "[::1]:4100",
            "--print-config",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("grpc_addr: 127.0.0.1:9002"), "{stdout}");
    assert!(stdout.contains("ip: 10.0.0.1") && stdout.contains("ip: ::1") && !stdout.contains("10.0.0.9"), "{stdout}");
    let out = scheduler(&["--seed-peer", "10.0.0.1:0", "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("seed_peers[0].port"));
}

/// `manager` of the printed config, parsed.
fn printed_manager(out: &std::process::Output) -> serde_yaml_ng::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    printed["manager"].clone()
}

#[test]
fn manager_flag_sets_manager_addrs_once_or_repeated() {
    let m = printed_manager(&scheduler(&["--manager", "127.0.0.1:65003", "--print-config"]));
    assert_eq!(m["addrs"], serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[127.0.0.1:65003]").unwrap(), "{m:?}");
    assert_eq!((m["refresh_interval"].as_str(), &m["cluster_id"]), (Some("10s"), &serde_yaml_ng::Value::Null));
    let m = printed_manager(&scheduler(&["--manager", "a:1", "--manager", "[::1]:65003", "--print-config"]));
    assert_eq!(m["addrs"], serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[a:1, '[::1]:65003']").unwrap(), "{m:?}");
    let out = scheduler(&["--manager", "127.0.0.1", "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("manager.addrs[0]"));
}

/// A config file and env written for the old keys still start the scheduler,
/// as the new keys (`manager.addr` -> `manager.addrs`, `cluster_id: 0` -> none,
/// `seed_peer_refresh_interval` -> `refresh_interval`).
#[test]
fn old_manager_spellings_still_load() {
    let out = with_config(
        "manager:\n  addr: m:65003\n  cluster_id: 0\n  seed_peer_refresh_interval: 3s\n",
        &["--print-config"],
    );
    let m = printed_manager(&out);
    assert_eq!(m["addrs"], serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[m:65003]").unwrap(), "{m:?}");
    assert_eq!((m["refresh_interval"].as_str(), &m["cluster_id"]), (Some("3s"), &serde_yaml_ng::Value::Null));
    let out = scheduler_with(
        &["--print-config"],
        &[("SCHEDULER__MANAGER__ADDR", "env:65003"), ("SCHEDULER__MANAGER__CLUSTER_ID", "4")],
    );
    let m = printed_manager(&out);
    assert_eq!(m["addrs"], serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[env:65003]").unwrap(), "{m:?}");
    assert_eq!(m["cluster_id"].as_u64(), Some(4));
}
