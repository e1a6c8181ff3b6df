//! `docs/manager.md`'s config reference lists exactly the keys `manager --print-config` prints.

use std::process::Command;

#[test]
fn the_config_reference_lists_every_key_and_no_other() {
    let out = Command::new(env!("CARGO_BIN_EXE_manager")).arg("--print-config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/manager.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    if let Err(e) = darter_common::config::check_documented(&String::from_utf8_lossy(&out.stdout), &doc) {
        panic!("docs/manager.md: {e}");
    }
}
