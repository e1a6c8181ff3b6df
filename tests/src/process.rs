//! Child processes that cannot outlive a test, signals to them, and polling
//! instead of sleeps.

use std::process::Child;
use std::time::{Duration, Instant};

/// How often [`wait_for`] re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

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

/// Polls `f` every 20 ms until it returns `true`, or fails after `timeout`
/// with an error naming `what`. Use it instead of fixed sleeps.
pub async fn wait_for<F: Fn() -> bool>(what: &str, timeout: Duration, f: F) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Like [`wait_for`], for a condition that must be awaited (a gRPC or HTTP
/// call): polls `f` every 20 ms until it yields `true`, or fails after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
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
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn wait_for_succeeds_and_times_out() {
        let calls = AtomicU32::new(0);
        wait_for("third call", Duration::from_secs(5), || calls.fetch_add(1, Ordering::Relaxed) >= 2).await.unwrap();
        let err = wait_for("never", Duration::from_millis(50), || false).await.unwrap_err();
        assert!(err.to_string().contains("waiting for never"), "{err}");
    }

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
