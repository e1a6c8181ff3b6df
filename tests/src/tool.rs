//! External command-line tools the registry kit drives (`umoci`, `skopeo`,
//! `docker-registry`, `containerd`, `ctr`, `htpasswd`, `openssl`): finding
//! them, running them with a deadline, and skipping a test cleanly when they
//! are not installed.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, bail};

/// Every tool the registry/containerd kit needs, with the Debian package
/// that provides it.
pub const REGISTRY_KIT_TOOLS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
];

/// The full path of `name` on `PATH`, if it is installed.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Whether the registry kit can run here: every tool in
/// [`REGISTRY_KIT_TOOLS`] is installed, and we are root (containerd's
/// snapshotter mounts). `Err` says what is missing and how to install it.
pub fn registry_kit_ready() -> Result<(), String> {
    let missing: Vec<&str> = REGISTRY_KIT_TOOLS.iter().filter(|(t, _)| find(t).is_none()).map(|(t, _)| *t).collect();
    if !missing.is_empty() {
        let mut packages: Vec<&str> =
            REGISTRY_KIT_TOOLS.iter().filter(|(t, _)| missing.contains(t)).map(|(_, p)| *p).collect();
        packages.dedup();
        return Err(format!("{} not installed (apt-get install {})", missing.join(", "), packages.join(" ")));
    }
    if !is_root() {
        return Err("containerd needs root (its snapshotter mounts)".into());
    }
    Ok(())
}

/// For a test that needs the registry kit: `true` when it can run; otherwise
/// prints `SKIPPED <test>: <why>` and returns `false`, or panics when `CI` is
/// set (CI never skips).
pub fn registry_kit_or_skip(test: &str) -> bool {
    match registry_kit_ready() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => panic!("{test}: {why}, and CI must not skip it"),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            false
        }
    }
}

fn is_root() -> bool {
    // The effective uid is the second field of `Uid:` in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Runs `cmd` to completion within `timeout` and returns its output. Fails
/// (with the command line, its exit status, stdout and stderr) when it
/// cannot start, times out (it is then killed) or exits unsuccessfully.
pub async fn run(cmd: &mut tokio::process::Command, timeout: Duration) -> anyhow::Result<Output> {
    let output = run_unchecked(cmd, timeout).await?;
    if !output.status.success() {
        bail!("`{}` failed ({}):\n{}", describe(cmd), output.status, text(&output));
    }
    Ok(output)
}

/// Like [`run`], but an unsuccessful exit is returned, not an error; only
/// failing to start and timing out are errors.
pub async fn run_unchecked(cmd: &mut tokio::process::Command, timeout: Duration) -> anyhow::Result<Output> {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let output = cmd.output();
    match tokio::time::timeout(timeout, output).await {
        Ok(output) => output.with_context(|| format!("start `{}`", describe(cmd))),
        // Dropping the future kills the child (`kill_on_drop`).
        Err(_) => bail!("`{}` did not finish within {timeout:?}", describe(cmd)),
    }
}

/// stdout then stderr of a finished command, as text.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn describe(cmd: &tokio::process::Command) -> String {
    let cmd = cmd.as_std();
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_reports_failures_and_timeouts() {
        let ok = run(tokio::process::Command::new("echo").arg("hi"), Duration::from_secs(5)).await.unwrap();
        assert_eq!(text(&ok), "hi\n");
        let err = run(tokio::process::Command::new("sh").args(["-c", "echo oops >&2; exit 3"]), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("oops"), "{err}");
        let err = run(tokio::process::Command::new("sleep").arg("5"), Duration::from_millis(100)).await.unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[test]
    fn finds_sh() {
        assert!(find("sh").is_some());
        assert!(find("no-such-tool-darter").is_none());
    }
}
