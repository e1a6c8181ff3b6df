//! N client processes (dfget, curl) started at the same instant, each timed
//! until it exits; any of them can be cut short (churn) or times out.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How one client ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Seconds from the common start to a successful exit.
    pub seconds: Option<f64>,
    /// Why it failed (exit status and the end of what it said).
    pub error: Option<String>,
    /// It was killed on purpose (its token was cancelled).
    pub killed: bool,
}

/// Starts every command at once (then calls `on_start` with their pids)
/// and waits for all of them; a command whose token is cancelled is killed
/// and reported as such; every command is killed after `timeout`. Returns
/// the common start and one result per command.
pub async fn run_all(
    commands: Vec<tokio::process::Command>,
    cancel: &[CancellationToken],
    timeout: Duration,
    on_start: impl FnOnce(&[u32]),
) -> (Instant, Vec<Finished>) {
    let start = Instant::now();
    let children: Vec<std::io::Result<tokio::process::Child>> = commands
        .into_iter()
        .map(|mut command| {
            command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
            command.stderr(std::process::Stdio::piped()).kill_on_drop(true);
            command.spawn()
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(|c| c.as_ref().ok().and_then(|c| c.id()).unwrap_or(0)).collect();
    on_start(&pids);
    let runs = children.into_iter().zip(cancel.iter().cloned()).map(|(child, token)| async move {
        let child = match child {
            Ok(c) => c,
            Err(e) => return Finished { seconds: None, error: Some(format!("spawn: {e}")), killed: false },
        };
        let output = child.wait_with_output();
        tokio::select! {
            out = output => match out {
                Ok(o) if o.status.success() => {
                    Finished { seconds: Some(start.elapsed().as_secs_f64()), error: None, killed: false }
                }
                Ok(o) => {
                    let said = String::from_utf8_lossy(&o.stderr);
                    let tail: String = said.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                    Finished { seconds: None, error: Some(format!("{}: {tail}", o.status)), killed: token.is_cancelled() }
                }
                Err(e) => Finished { seconds: None, error: Some(e.to_string()), killed: false },
            },
            () = token.cancelled() => Finished { seconds: None, error: None, killed: true },
            () = tokio::time::sleep(timeout) => {
                Finished { seconds: None, error: Some(format!("not done after {timeout:?}")), killed: false }
            }
        }
    });
    let results = futures::future::join_all(runs).await;
    (start, results)
}
