//! Default locations shared by dfdaemon and dfget, so both agree on the socket.

use std::path::PathBuf;

fn is_root() -> bool {
    nix_geteuid() == 0
}

/// The daemon's effective user ID.
pub(crate) fn euid() -> u32 {
    nix_geteuid()
}

fn nix_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail; the binding is
    // declared unsafe only because every FFI call is.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// Default unix socket of the download API.
pub fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/darter/dfdaemon.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("darter/dfdaemon.sock"),
        _ => PathBuf::from(format!("/tmp/darter-{}/dfdaemon.sock", nix_geteuid())),
    }
}

/// Default data directory.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/darter/dfdaemon");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("darter/dfdaemon");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/darter/dfdaemon"),
        None => PathBuf::from(format!("/tmp/darter-{}/data", nix_geteuid())),
    }
}
