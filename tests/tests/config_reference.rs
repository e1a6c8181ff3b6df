//! Each binary's config reference (`docs/<binary>.md`, section "Config
//! reference") lists exactly the keys `<binary> --print-config` prints: a key
//! added to a config without its documentation, or documented after it is
//! gone, fails here with the keys named.

use testkit::dfdaemon::bin_dir;

fn reference_matches_print_config(binary: &str) {
    let out = std::process::Command::new(bin_dir().join(binary)).arg("--print-config").output().unwrap();
    assert!(out.status.success(), "{binary} --print-config: {}", String::from_utf8_lossy(&out.stderr));
    let doc_path = format!("{}/../docs/{binary}.md", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|e| panic!("{doc_path}: {e}"));
    if let Err(e) = darter_common::config::check_documented(&String::from_utf8_lossy(&out.stdout), &doc) {
        panic!("docs/{binary}.md: {e}");
    }
}

#[test]
fn the_manager_reference_lists_every_key_and_no_other() {
    reference_matches_print_config("manager");
}

#[test]
fn the_scheduler_reference_lists_every_key_and_no_other() {
    reference_matches_print_config("scheduler");
}

#[test]
fn the_dfdaemon_reference_lists_every_key_and_no_other() {
    reference_matches_print_config("dfdaemon");
}
