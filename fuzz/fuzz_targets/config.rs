//! Each binary's config loader on arbitrary YAML (the file layer of
//! `darter_common::config::load`, with its renames, deserialization and
//! validation), for the dfdaemon, scheduler and manager `Config` types.
//!
//! Properties: no panic; every error names a field (a dotted path, `.` for
//! the document); a config that loads prints (as `--print-config` does, and
//! in full) as YAML that loads again and prints the same.

#![no_main]

use darter_common::cli::to_printable_yaml;
use darter_common::config::{ConfigError, Validate, load_text};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check::<dfdaemon::config::Config>(text);
    check::<scheduler::Config>(text);
    check::<manager::Config>(text);
});

fn load<T: DeserializeOwned + Validate>(text: &str) -> Result<T, ConfigError> {
    load_text(text, "fuzz.yaml", "DARTER_FUZZ", Vec::new(), &[])
}

fn check<T: DeserializeOwned + Serialize + Validate>(text: &str) {
    let config: T = match load(text) {
        Ok(c) => c,
        Err(ConfigError::Parse { field, message, .. }) => {
            assert!(!field.is_empty(), "a parse error names no field: {message}");
            return;
        }
        Err(ConfigError::Invalid(e)) => {
            assert!(!e.field.is_empty(), "a validation error names no field: {}", e.message);
            return;
        }
        Err(e @ ConfigError::Read { .. }) => panic!("no file is read: {e}"),
    };
    let full = serde_yaml_ng::to_string(&config).expect("a loaded config serializes");
    let reloaded: T = load(&full).unwrap_or_else(|e| panic!("the config it printed does not load: {e}\n{full}"));
    let again = serde_yaml_ng::to_string(&reloaded).expect("a loaded config serializes");
    assert_eq!(again, full, "printing is stable");
    let (printed, _) = to_printable_yaml(&config).expect("the config prints");
    if let Err(e) = load::<T>(&printed) {
        panic!("--print-config output does not load: {e}\n{printed}");
    }
}
