//! Bootstrap join tokens (`tls.bootstrap_tokens_file`): what the Helm chart
//! hands the manager and its members before anything runs. A token from the
//! file enrolls a real member (which reads it from `tls.join_token_file`);
//! it enrolls only its role; a token added to the file later works without
//! a restart; one revoked through REST stays revoked after a restart; a
//! malformed file stops the manager at start, naming the file and entry.

use std::path::Path;
use std::time::Duration;

use darter_common::tls::Role;
use testkit::dfdaemon::{DaemonOptions, DaemonProcess, bin_dir};
use testkit::eventually::{patience, wait_until};
use testkit::manager::ManagerProcess;
use testkit::pki::Join;

const PEER_TOKEN: &str = "boot01.0123456789abcdef";
const LATER_TOKEN: &str = "boot02.0123456789abcdef";

fn write_tokens(path: &Path, entries: &[(&str, &str)]) {
    let yaml: String = entries.iter().map(|(t, role)| format!("- token: {t}\n  role: {role}\n")).collect();
    std::fs::write(path, yaml).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_the_file_enroll_members_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir();
    let tokens = dir.path().join("tokens.yaml");
    write_tokens(&tokens, &[(PEER_TOKEN, "peer")]);
    let env = [("MANAGER__TLS__BOOTSTRAP_TOKENS_FILE".to_string(), tokens.display().to_string())];
    let mut manager =
        ManagerProcess::start(&bin.join("manager"), &dir.path().join("manager"), &env, "darter-test-root")
            .await
            .unwrap();
    // The CA pin, as the chart's members would get it (or the CA file).
    let pin = manager.join("peer", None).await.unwrap().ca_cert_hash;
    let join = |token: &str| Join { token: token.into(), ca_cert_hash: pin.clone() };

    // A real member reads the token from a file, as the chart mounts it.
    let token_file = dir.path().join("peer-token");
    std::fs::write(&token_file, PEER_TOKEN).unwrap();
    let mut d = DaemonOptions::new(bin.join("dfdaemon"), dir.path().join("peer-boot"));
    d.tls = vec![
        ("DFDAEMON__TLS__JOIN_TOKEN_FILE".into(), token_file.display().to_string()),
        ("DFDAEMON__TLS__CA_CERT_HASH".into(), pin.clone()),
        ("DFDAEMON__HOST__HOSTNAME".into(), "peer-boot".into()),
    ];
    d.args = vec!["--manager".into(), manager.grpc_addr.to_string()];
    let daemon = DaemonProcess::start(d).await;
    assert!(daemon.is_ok(), "a member enrolls with a bootstrap token: {:?}\n{}", daemon.err(), manager.log_tail(30));

    let as_scheduler = manager.enroll_with(&join(PEER_TOKEN), Role::Scheduler, "scheduler-x").await;
    let e = format!("{:#}", as_scheduler.unwrap_err());
    assert!(e.contains("not a scheduler"), "a peer token enrolls peers only: {e}");

    // Added to the file while the manager runs: works without a restart.
    assert!(manager.enroll_with(&join(LATER_TOKEN), Role::Peer, "peer-later").await.is_err());
    write_tokens(&tokens, &[(PEER_TOKEN, "peer"), (LATER_TOKEN, "peer")]);
    wait_until("the token added to the file enrolls", patience(Duration::from_secs(30)), || async {
        manager.enroll_with(&join(LATER_TOKEN), Role::Peer, "peer-later").await.is_ok()
    })
    .await
    .unwrap();

    // Revoked through REST: refused, and still refused after a restart that
    // reads the same file.
    let (status, body) = manager.rest("DELETE", "/api/v1/join-tokens/boot01", None).await.unwrap();
    assert_eq!(status, 204, "{body}");
    assert!(manager.enroll_with(&join(PEER_TOKEN), Role::Peer, "peer-2").await.is_err());
    manager.restart().await.unwrap();
    let again = manager.enroll_with(&join(PEER_TOKEN), Role::Peer, "peer-3").await;
    assert!(again.is_err(), "a revoked bootstrap token is not brought back by a restart");
    let log = std::fs::read_to_string(&manager.log_path).unwrap();
    assert!(log.contains("bootstrap token skipped: it was revoked"), "the log says why:\n{log}");
    assert!(manager.enroll_with(&join(LATER_TOKEN), Role::Peer, "peer-4").await.is_ok(), "the others still work");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_tokens_file_stops_the_manager_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, "- token: boot01.0123456789abcdef\n  role: admin\n").unwrap();
    let env = [("MANAGER__TLS__BOOTSTRAP_TOKENS_FILE".to_string(), tokens.display().to_string())];
    let started =
        ManagerProcess::start(&bin_dir().join("manager"), &dir.path().join("manager"), &env, "darter-test-root").await;
    let e = format!("{:#}", started.unwrap_err());
    let log = std::fs::read_to_string(dir.path().join("manager").join("manager.log")).unwrap_or_default();
    let said = format!("{e}\n{log}");
    assert!(said.contains("tokens.yaml") && said.contains("entry 1: role"), "names the file and entry: {said}");
}

/// A reinstall: a new manager with a new CA, while the member keeps its data
/// directory (a node's host path, a seed's volume). Given the new cluster's
/// token and pin, it enrolls again instead of presenting the certificate of
/// the old CA, which the new cluster refuses.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_kept_across_a_reinstall_with_a_new_ca_enrolls_again() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir();
    let member = |manager: &ManagerProcess, join: &Join| {
        let mut d = DaemonOptions::new(bin.join("dfdaemon"), dir.path().join("peer-kept"));
        d.tls = join.env("DFDAEMON");
        d.tls.push(("DFDAEMON__HOST__HOSTNAME".into(), "peer-kept".into()));
        d.args = vec!["--manager".into(), manager.grpc_addr.to_string()];
        d
    };
    // Discoveries that reached a manager (a mutual-TLS call), in the member's log so far.
    let reached =
        |log: &Path| std::fs::read_to_string(log).unwrap_or_default().matches("schedulers from the manager").count();
    let first = ManagerProcess::start(&bin.join("manager"), &dir.path().join("manager-1"), &[], "darter-test-root")
        .await
        .unwrap();
    let join = first.join("peer", None).await.unwrap();
    let daemon = DaemonProcess::start(member(&first, &join)).await.unwrap();
    let log = daemon.log_path.clone();
    wait_until("the member to reach the first manager", patience(Duration::from_secs(20)), || async {
        reached(&log) >= 1
    })
    .await
    .unwrap();
    drop(daemon);
    drop(first);
    let before = reached(&log);

    let second = ManagerProcess::start(&bin.join("manager"), &dir.path().join("manager-2"), &[], "darter-test-root")
        .await
        .unwrap();
    let join = second.join("peer", None).await.unwrap();
    let daemon = DaemonProcess::start(member(&second, &join)).await.unwrap();
    wait_until("the member to reach the new manager", patience(Duration::from_secs(20)), || async {
        reached(&log) > before
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_tail(30)));
    // What it keeps now is a certificate of the new CA.
    let kept = std::fs::read(dir.path().join("peer-kept/data/tls/ca.crt")).unwrap();
    let ca = darter_common::tls::certificate::certs_from_pem(&kept).unwrap();
    let pin = darter_common::tls::certificate::ca_pin(&ca[0]).unwrap();
    assert_eq!(pin, join.ca_cert_hash, "the member keeps the new cluster's CA");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("of another CA than the configured one; enrolling again"), "says why it enrolled: {text}");
}
