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
