//! Child processes that cannot outlive a test, and signals to them.

use std::process::Child;

/// Owns a child process and kills (SIGKILL) and reaps it when dropped, so a
/// failing test or benchmark never leaves daemons running.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Takes ownership of a spawned child.
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Returns `true` once the child has exited (without blocking).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.0.try_wait(), Ok(None))
    }

    /// Kills the child with SIGKILL and waits for it. Idempotent: a child that
    /// already exited is only reaped.
    pub fn kill(&mut self) {
        // `kill` fails only if the child was already reaped; either way `wait`
        // below returns promptly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `bin` with `args` to completion (a CLI, or a service that exits at
/// once, as with `--print-config`), with `env` set and every variable of the
/// test's own environment starting with `clear_prefix` removed, so a
/// developer's `DFDAEMON__...` cannot change what the test sees.
pub fn run_binary(
    bin: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    env: &[(&str, &str)],
    clear_prefix: &str,
) -> std::process::Output {
    let bin = bin.as_ref();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with(clear_prefix)) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap_or_else(|e| panic!("run {}: {e}", bin.to_string_lossy()))
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`, ...) to process `pid`.
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn guard_kills_child_on_drop() {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id();
        let mut guard = ChildGuard::new(child);
        assert!(!guard.has_exited());
        drop(guard);
        // The pid was reaped by the guard, so /proc no longer lists it
        // (a zombie would still be listed).
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
