//! Waiting for a condition instead of sleeping: the one poll loop every test
//! and launcher uses, with one default deadline and one knob for slow machines.
//!
//! Every deadline goes through [`patience`]: `DARTER_TEST_PATIENCE=3` gives
//! every wait three times as long (a loaded CI runner, a debug build under
//! valgrind). Deadlines bound a wait; they never make a test pass sooner.

use std::future::Future;
use std::time::Duration;

/// How long an expectation may take by default before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long a process may take from spawn to ready (ready file written,
/// `/healthz` answering 200).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// The environment variable that multiplies every deadline.
pub const PATIENCE_VAR: &str = "DARTER_TEST_PATIENCE";

/// How often a condition is checked again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// `deadline` multiplied by `DARTER_TEST_PATIENCE` (a positive number;
/// default 1). Panics with a clear message on a value that is not one.
pub fn patience(deadline: Duration) -> Duration {
    deadline.mul_f64(patience_factor(std::env::var(PATIENCE_VAR).ok().as_deref()))
}

fn patience_factor(value: Option<&str>) -> f64 {
    match value.map(str::trim) {
        None | Some("") => 1.0,
        Some(v) => match v.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => f,
            _ => panic!("{PATIENCE_VAR}={v}: expected a positive number (a multiplier of every test deadline)"),
        },
    }
}

/// The poll loop: polls `f` until it yields `Ok(Some)`, or fails after
/// `timeout` (times [`patience`]) with an error naming `what` and the last
/// error `f` returned (an `Err` is a failed attempt, not the end).
pub async fn try_poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let timeout = patience(timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if tokio::time::Instant::now() >= deadline {
            match last {
                Some(e) => anyhow::bail!("timed out after {timeout:?} waiting for {what}: {e:#}"),
                None => anyhow::bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `f` until it yields `Some`, or fails after `timeout` (times
/// [`patience`]) with an error naming `what`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    try_poll(what, timeout, || {
        let attempt = f();
        async move { Ok(attempt.await) }
    })
    .await
}

/// Polls `f` until it holds, or fails after `timeout` (times [`patience`]).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(what, timeout, || {
        let check = f();
        async move { check.await.then_some(()) }
    })
    .await
}

/// Polls `f` until it holds; panics after [`DEADLINE`] (times [`patience`]).
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until(what, DEADLINE, f).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Polls `f` until it yields `Some` and returns the value; panics after
/// [`DEADLINE`] (times [`patience`]).
pub async fn eventually_some<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(what, DEADLINE, f).await.unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn polls_until_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let n =
            eventually_some("the third call", || async { (calls.fetch_add(1, Ordering::Relaxed) >= 2).then_some(7) })
                .await;
        assert_eq!((n, calls.load(Ordering::Relaxed)), (7, 3));
    }

    #[tokio::test]
    async fn times_out_naming_what_it_waited_for() {
        let err = wait_until("never", Duration::from_millis(50), || async { false }).await.unwrap_err();
        assert!(err.to_string().contains("waiting for never"), "{err}");
    }

    #[tokio::test]
    async fn a_timeout_names_the_last_error() {
        let err = try_poll::<(), _, _>("a flaky probe", Duration::from_millis(50), || async {
            Err(anyhow::anyhow!("stale element"))
        })
        .await
        .unwrap_err();
        assert!(err.to_string().ends_with("waiting for a flaky probe: stale element"), "{err}");
    }

    #[test]
    fn patience_multiplies_and_rejects_nonsense() {
        assert_eq!(patience_factor(None), 1.0);
        assert_eq!(patience_factor(Some(" 2.5 ")), 2.5);
        for bad in ["0", "-1", "slow", "inf"] {
            let caught = std::panic::catch_unwind(|| patience_factor(Some(bad)));
            assert!(caught.is_err(), "{bad} accepted");
        }
    }
}
