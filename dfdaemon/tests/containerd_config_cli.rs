//! `dfdaemon containerd-config --check-containerd`: it says plainly when
//! containerd does not read the hosts files (exit 3, with the fix), and is
//! quiet when it does; the files are written either way. The config checked
//! is containerd's own default (`containerd config default`) when containerd
//! is installed, which leaves `config_path` empty.

fn containerd_config(certs: &std::path::Path, config: &std::path::Path) -> std::process::Output {
    let (certs, config) = (certs.to_str().unwrap(), config.to_str().unwrap());
    let args = ["containerd-config", "--registry", "docker.io", "--certs-dir", certs, "--check-containerd", config];
    testkit::process::run_binary(env!("CARGO_BIN_EXE_dfdaemon"), &args, &[], "DFDAEMON__")
}

/// containerd's default config, or the same registry table as it writes it.
fn default_config() -> String {
    std::process::Command::new("containerd")
        .args(["config", "default"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| {
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n".into()
        })
}

#[test]
fn says_when_containerd_does_not_read_the_hosts_files() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, config) = (dir.path().join("certs.d"), dir.path().join("config.toml"));
    let default = default_config();
    std::fs::write(&config, &default).unwrap();
    let out = containerd_config(&certs, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("pulls do not go through the mirror") && stderr.contains("config_path"), "{stderr}");
    assert!(certs.join("docker.io/hosts.toml").exists(), "the files are written anyway");

    let set = default.replace("config_path = \"\"", &format!("config_path = \"{}\"", certs.display()));
    assert_ne!(set, default, "the default config has an empty config_path");
    std::fs::write(&config, set).unwrap();
    let out = containerd_config(&certs, &config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pulls go through the mirror"));
}
