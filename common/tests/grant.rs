//! Piece grants: what a parent accepts (`darter_common::tls::grant`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use darter_common::tls::grant::*;
use darter_common::tls::{Credentials, Identity, Role, Transport};
use testkit::pki::{TestCa, identity};

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn credentials(ca: &TestCa, identity: &Identity) -> Arc<Credentials> {
    match ca.transport(identity) {
        Transport::Mtls(c) => c,
        Transport::Plaintext => unreachable!("a kit CA gives TLS"),
    }
}

fn issuer(ca: &TestCa, who: &Identity) -> Issuer {
    Issuer::new(credentials(ca, who), DEFAULT_TTL)
}

fn parent(ca: &TestCa) -> Checker {
    Checker::new(credentials(ca, &identity(Role::Peer, "parent")), "parent-host")
}

#[test]
fn a_scheduler_grant_admits_its_task_at_its_parent_and_nothing_else() {
    let ca = TestCa::new();
    let scheduler = issuer(&ca, &identity(Role::Scheduler, "scheduler"));
    let checker = parent(&ca);
    let grant = scheduler.issue("task-a", "parent-host", "child-host").unwrap();

    let admitted = checker.check(Some(&grant), "task-a").unwrap();
    assert_eq!(admitted.child_host_id, "child-host");
    assert_eq!(checker.check(Some(&grant), "task-a").unwrap(), admitted, "remembered grants still pass");
    assert_eq!(checker.check(Some(&grant), "task-b"), Err(Refusal::OtherTask));
    let elsewhere = scheduler.issue("task-a", "another-parent", "child-host").unwrap();
    assert_eq!(checker.check(Some(&elsewhere), "task-a"), Err(Refusal::OtherParent));
    assert_eq!(checker.check(None, "task-a"), Err(Refusal::Missing));
}

#[test]
fn grants_expire_after_their_time_and_the_clock_skew() {
    let ca = TestCa::new();
    let scheduler = issuer(&ca, &identity(Role::Scheduler, "scheduler"));
    let checker = parent(&ca);
    let grant = |expires_at| Grant {
        task_id: "t".into(),
        parent_host_id: "parent-host".into(),
        child_host_id: "c".into(),
        expires_at,
    };
    let now = now_secs();
    let just_past = scheduler.sign(&grant(now - 10)).unwrap();
    assert!(checker.check(Some(&just_past), "t").is_ok(), "within the tolerated skew");
    let long_past = scheduler.sign(&grant(now - CLOCK_SKEW.as_secs() - 10)).unwrap();
    assert_eq!(checker.check(Some(&long_past), "t"), Err(Refusal::Expired));
    let far_future = scheduler.sign(&grant(now + MAX_TTL.as_secs() + 3600)).unwrap();
    assert_eq!(checker.check(Some(&far_future), "t"), Err(Refusal::Expired));
    assert!(
        Issuer::new(credentials(&ca, &identity(Role::Scheduler, "s")), Duration::from_secs(60))
            .issue("t", "parent-host", "c")
            .is_ok_and(|g| checker.check(Some(&g), "t").is_ok())
    );
}

#[test]
fn only_a_scheduler_of_the_parents_cluster_under_its_ca_may_grant() {
    let ca = TestCa::new();
    let checker = parent(&ca);
    let signer_refused = |issuer: Issuer| {
        let grant = issuer.issue("t", "parent-host", "c").unwrap();
        matches!(checker.check(Some(&grant), "t"), Err(Refusal::Signer(_)))
    };
    assert!(signer_refused(issuer(&ca, &identity(Role::Peer, "a-peer"))), "a peer cannot grant");
    assert!(signer_refused(issuer(&ca, &identity(Role::SeedPeer, "a-seed"))), "a seed peer cannot grant");
    let other_cluster = Identity::new(Role::Scheduler, testkit::pki::CLUSTER + 1, "s2").unwrap();
    assert!(signer_refused(issuer(&ca, &other_cluster)), "another cluster's scheduler cannot grant");
    let stranger = TestCa::new();
    assert!(
        signer_refused(issuer(&stranger, &identity(Role::Scheduler, "scheduler"))),
        "another CA's scheduler cannot"
    );
}

#[test]
fn an_altered_grant_does_not_verify() {
    let ca = TestCa::new();
    let checker = parent(&ca);
    let grant = issuer(&ca, &identity(Role::Scheduler, "scheduler")).issue("task-a", "parent-host", "c").unwrap();
    let mut wire = hex::decode(&grant).unwrap();
    // The expiry's last byte: a later expiry the scheduler did not sign.
    wire[10] ^= 0x01;
    assert_eq!(checker.check(Some(&hex::encode(&wire)), "task-a"), Err(Refusal::Signature));
    let mut wire = hex::decode(&grant).unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 0x01;
    assert_eq!(checker.check(Some(&hex::encode(&wire)), "task-a"), Err(Refusal::Signature));
}

#[test]
fn a_revoked_scheduler_stops_granting_even_for_remembered_grants() {
    let ca = TestCa::new();
    let scheduler = credentials(&ca, &identity(Role::Scheduler, "scheduler"));
    let parent_credentials = credentials(&ca, &identity(Role::Peer, "parent"));
    let checker = Checker::new(parent_credentials.clone(), "parent-host");
    let grant = Issuer::new(scheduler.clone(), DEFAULT_TTL).issue("t", "parent-host", "c").unwrap();
    assert!(checker.check(Some(&grant), "t").is_ok());
    parent_credentials.set_revoked(HashSet::from([scheduler.material().facts.serial.clone()]));
    assert!(matches!(checker.check(Some(&grant), "t"), Err(Refusal::Signer(_))));
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let ca = TestCa::new();
    let checker = parent(&ca);
    let grant = issuer(&ca, &identity(Role::Scheduler, "scheduler")).issue("t", "parent-host", "c").unwrap();
    for bad in ["", "zz", "01", "02", &grant[..grant.len() - 2], &format!("{grant}00"), "01ffff"] {
        assert!(matches!(checker.check(Some(bad), "t"), Err(Refusal::Malformed(_))), "{bad:?}");
    }
    let mut no_chain = hex::decode(&grant).unwrap();
    let chain_at = 1 + 2 + 8 + (2 + 1) + (2 + 11) + (2 + 1);
    no_chain.truncate(chain_at);
    no_chain.push(0);
    no_chain.extend_from_slice(&[0, 1, 0]);
    assert_eq!(checker.check(Some(&hex::encode(&no_chain)), "t"), Err(Refusal::Malformed("no certificate")));
}
