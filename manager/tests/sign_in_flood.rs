//! Issue 14, attack 5 (sign-in flood), against the real `manager` binary:
//! 64 concurrent sign-ins took the manager from 421 MiB to 1.5 GiB (argon2 on
//! an unbounded blocking pool), where it stayed, and nothing limited guessing.
//!
//! Now argon2 runs on `auth.password_checks` threads behind a queue of
//! `auth.password_check_queue`: the flood costs at most [`RSS_BOUND`] over the
//! idle manager (peak, `VmHWM`, against `VmRSS` before) and the sign-ins
//! beyond the queue get 429 with `Retry-After` at once. Repeated wrong
//! passwords get 429 too, for their address; a right password works again
//! once the wait is over, and another address is never held up.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;
use support::rest::{Answer, Api};
use testkit::eventually::{DEADLINE, poll};
use testkit::manager::ManagerProcess;

const ROOT_PASSWORD: &str = "flood-root-password";
/// How much the flood may grow the manager: two argon2 threads keep about
/// 19 MiB each, the rest is connections and tasks.
const RSS_BOUND: u64 = 64 << 20;
/// Sign-ins sent at once. With the defaults (2 threads, 32 waiting) about 30
/// are refused at once by the queue, and once 5 failures are counted the rest
/// by the throttle; at least a quarter must be, whatever the timing.
const FLOOD: usize = 64;

/// Another client address on loopback.
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap_or_else(|| panic!("{field}"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The `Retry-After` of a 429, in whole seconds (at least 1).
#[track_caller]
fn retry_after(a: &Answer) -> u64 {
    a.err(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None);
    let v = a.headers.get(reqwest::header::RETRY_AFTER).unwrap_or_else(|| panic!("no Retry-After: {a:?}"));
    let secs: u64 = v.to_str().unwrap().parse().unwrap_or_else(|e| panic!("Retry-After {v:?}: {e}"));
    assert!(secs >= 1, "{a:?}");
    secs
}

async fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, ManagerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<_> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let m =
        ManagerProcess::start(env!("CARGO_BIN_EXE_manager").as_ref(), dir.path(), &env, ROOT_PASSWORD).await.unwrap();
    (dir, m)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_sign_ins_stays_bounded_and_the_excess_is_told_to_retry() {
    // A short backoff cap, so the test sees the wait end.
    let (_dir, m) = start(&[("MANAGER__AUTH__SIGN_IN_THROTTLE__MAX_BACKOFF", "2s")]).await;
    let pid = m.pid().unwrap();
    let anon = Api::at(m.rest_addr);
    // Warm up: one real sign-in, so the idle figure includes a password check.
    anon.sign_in("root", ROOT_PASSWORD).await;
    let idle = proc_status_bytes(pid, "VmRSS");

    let mut flood = tokio::task::JoinSet::new();
    for i in 0..FLOOD {
        let anon = anon.clone();
        flood.spawn(async move { anon.sign_in_answer("root", &format!("wrong-password-{i}")).await });
    }
    let answers = flood.join_all().await;
    let peak = proc_status_bytes(pid, "VmHWM");
    let after = proc_status_bytes(pid, "VmRSS");

    let refused = answers.iter().filter(|a| a.status == StatusCode::UNAUTHORIZED).count();
    let told_to_retry: Vec<&Answer> = answers.iter().filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS).collect();
    for a in &told_to_retry {
        retry_after(a);
    }
    assert_eq!(refused + told_to_retry.len(), FLOOD, "every answer is a 401 or a 429: {answers:?}");
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "{refused} checked and refused, {} told to retry; idle {:.0} MiB, peak {:.0} MiB, after {:.0} MiB",
        told_to_retry.len(),
        mib(idle),
        mib(peak),
        mib(after)
    );
    assert!(told_to_retry.len() >= FLOOD / 4, "only {} of {FLOOD} told to retry", told_to_retry.len());
    assert!(
        peak < idle + RSS_BOUND,
        "the flood took the manager from {:.0} MiB to a peak of {:.0} MiB (bound: +{:.0} MiB)",
        mib(idle),
        mib(peak),
        mib(RSS_BOUND)
    );

    // This address failed many times: even the right password waits now...
    retry_after(&anon.sign_in_answer("root", ROOT_PASSWORD).await);
    // ...but another address is not held up...
    Api::at_from(m.rest_addr, OTHER_CLIENT).sign_in("root", ROOT_PASSWORD).await;
    // ...and once the wait is over, the right password works here again.
    poll("the right password to work again after the wait", DEADLINE, || {
        let anon = anon.clone();
        async move { (anon.sign_in_answer("root", ROOT_PASSWORD).await.status == StatusCode::OK).then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn repeated_wrong_passwords_wait_for_their_address_and_name_only() {
    let (_dir, m) = start(&[
        ("MANAGER__AUTH__SIGN_IN_THROTTLE__FAILURES_PER_NAME", "3"),
        ("MANAGER__AUTH__SIGN_IN_THROTTLE__BACKOFF", "1s"),
        ("MANAGER__AUTH__SIGN_IN_THROTTLE__MAX_BACKOFF", "4s"),
    ])
    .await;
    let anon = Api::at(m.rest_addr);
    let root = anon.sign_in("root", ROOT_PASSWORD).await;
    let guest = serde_json::json!({"name": "guest", "password": "guest-password", "role": "guest"});
    root.post("/users", guest).await.ok(StatusCode::CREATED);

    for _ in 0..3 {
        anon.sign_in_answer("root", "wrong-password").await.unauthenticated();
    }
    // The fourth attempt is not even checked, wrong or right.
    let wait = retry_after(&anon.sign_in_answer("root", "wrong-password").await);
    assert!(wait <= 1, "the first wait is auth.sign_in_throttle.backoff: {wait}s");
    retry_after(&anon.sign_in_answer("root", ROOT_PASSWORD).await);
    // Another name from this address, and this name from another address, go on.
    anon.sign_in("guest", "guest-password").await;
    let elsewhere = Api::at_from(m.rest_addr, OTHER_CLIENT);
    elsewhere.sign_in("root", ROOT_PASSWORD).await;

    // After the wait the right password works, and clears the failures.
    poll("the right password to work after the wait", DEADLINE, || {
        let anon = anon.clone();
        async move { (anon.sign_in_answer("root", ROOT_PASSWORD).await.status == StatusCode::OK).then_some(()) }
    })
    .await
    .unwrap();
    for _ in 0..2 {
        anon.sign_in_answer("root", "wrong-password").await.unauthenticated();
    }
    anon.sign_in("root", ROOT_PASSWORD).await;

    // Checking one's own old password counts the same way.
    let me = anon.sign_in("guest", "guest-password").await;
    let guest_id = me.get("/users/me").await.ok(StatusCode::OK)["id"].as_i64().unwrap();
    let change = serde_json::json!({"old_password": "not-it", "new_password": "new-guest-password"});
    for _ in 0..3 {
        me.put(&format!("/users/{guest_id}/password"), change.clone()).await.invalid("old_password");
    }
    retry_after(&me.put(&format!("/users/{guest_id}/password"), change).await);
}
