//! Switching a node's containerd to the mirror: `dfdaemon containerd-config`
//! writes `<certs.d>/<registry>/hosts.toml` for each registry (and optionally
//! `_default/hosts.toml`, the catch-all), naming dfdaemon's proxy as a pull
//! and resolve mirror in front of the registry itself. containerd tries the
//! mirror first and falls back to the registry when the mirror fails.
//!
//! Writing is idempotent (an identical file is left alone) and keeps the
//! previous file as `hosts.toml.bak`; each file is replaced atomically.
//! [`restore`] undoes it (an uninstall): the backup goes back, or a file this
//! command wrote without one is removed; anyone else's file stays.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What a run did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The file already said this.
    Unchanged(PathBuf),
    /// Written; the previous content, if any, was saved to the backup path.
    Written { path: PathBuf, backup: Option<PathBuf> },
}

/// The registry API endpoint containerd would use for `registry`
/// (`docker.io` is served by `registry-1.docker.io`).
pub fn server(registry: &str, insecure: bool) -> String {
    let registry = registry.to_ascii_lowercase();
    let host = match registry.as_str() {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    };
    let scheme = if insecure { "http" } else { "https" };
    format!("{scheme}://{host}")
}

/// Checks a registry name as given on the command line (`host[:port]`).
pub fn check_registry(registry: &str) -> Result<(), String> {
    let ok = !registry.is_empty()
        && !registry.starts_with('.')
        && registry != "_default"
        && registry.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && url::Url::parse(&format!("https://{registry}/")).is_ok_and(|u| u.host_str().is_some());
    if ok { Ok(()) } else { Err(format!("{registry:?} is not a registry host[:port]")) }
}

/// The first line of every file this command writes.
pub const HEADER: &str = "# Written by `dfdaemon containerd-config`: pulls go through Darter's mirror first.\n";

/// How containerd reaches a registry itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registry<'a> {
    /// `host[:port]`.
    pub name: &'a str,
    /// Plain HTTP.
    pub insecure: bool,
    /// The CA that signed the registry's certificate (a private CA), as
    /// containerd's `ca` for the server.
    pub ca: Option<&'a Path>,
}

/// Checks a CA path for a `ca =` line: absolute and free of quotes and
/// control characters (it is written into TOML as is).
pub fn check_ca(path: &Path) -> Result<(), String> {
    let text = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    if !path.is_absolute() || text.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(format!("{text:?} must be an absolute path without quotes, backslashes or control characters"));
    }
    Ok(())
}

/// `hosts.toml` for `registry` with `mirror` (`http://127.0.0.1:4001`) in front.
/// `registry` `None` is the catch-all (`_default`): no `server`, so containerd
/// falls back to each registry's own host.
pub fn render(registry: Option<Registry<'_>>, mirror: &str) -> String {
    let mut out = String::from(HEADER);
    if let Some(r) = registry {
        out.push_str(&format!("server = \"{}\"\n", server(r.name, r.insecure)));
        if let Some(ca) = r.ca {
            out.push_str(&format!("ca = \"{}\"\n", ca.display()));
        }
    }
    out.push_str(&format!("\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"));
    if let Some(r) = registry {
        // For clients that do not send `?ns=` (containerd does).
        out.push_str(&format!(
            "\n[host.\"{mirror}\".header]\n  X-Darter-Registry = [\"{}\"]\n",
            server(r.name, r.insecure)
        ));
    }
    out
}

/// Whether containerd reads the hosts files at all: its CRI plugin's
/// `registry.config_path` must name the directory they are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigPath {
    /// It names `certs_dir`: pulls go through the mirror from the next one on.
    Set,
    /// Not set (or empty): containerd ignores `certs.d` entirely.
    NotSet,
    /// It names another directory.
    Elsewhere(String),
}

/// Reads containerd's `config.toml` text for the CRI plugin's
/// `registry.config_path` (containerd 1.x and 2.x table names) and compares
/// it with `certs_dir`. A line scan, not a TOML parser: it reads the
/// `[plugins."…cri…".registry]` table header and the `config_path = "…"`
/// under it, as `containerd config default` writes them.
pub fn check_config_path(config: &str, certs_dir: &Path) -> ConfigPath {
    let mut in_registry = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_registry = line.contains("cri") && line.trim_end_matches(']').ends_with(".registry");
            continue;
        }
        if !in_registry {
            continue;
        }
        let Some(value) = line.strip_prefix("config_path").map(str::trim).and_then(|r| r.strip_prefix('=')) else {
            continue;
        };
        let value = value.split('#').next().unwrap_or_default().trim().trim_matches(|c| c == '"' || c == '\'');
        return match value {
            "" => ConfigPath::NotSet,
            v if Path::new(v) == certs_dir => ConfigPath::Set,
            v => ConfigPath::Elsewhere(v.to_string()),
        };
    }
    ConfigPath::NotSet
}

/// What [`restore`] did to one registry's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The backup is `hosts.toml` again.
    Backup(PathBuf),
    /// This command's file had no backup (there was none before): removed.
    Removed(PathBuf),
    /// Not this command's file (someone changed it since): left alone.
    NotOurs(PathBuf),
    /// No file.
    Absent(PathBuf),
}

/// Undoes [`write`] for `<certs_dir>/<dir_name>`: puts `hosts.toml.bak`
/// back, or removes a `hosts.toml` this command wrote when there was no
/// file before (and the directory when it is empty then). A `hosts.toml`
/// that does not start with [`HEADER`] is someone else's and stays.
pub fn restore(certs_dir: &Path, dir_name: &str) -> std::io::Result<Restored> {
    let dir = certs_dir.join(dir_name);
    let restored = restore_file(&dir.join("hosts.toml"))?;
    if matches!(restored, Restored::Removed(_)) {
        // Only an empty directory goes (it was made for this file).
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(restored)
}

/// Undoes [`write_file`] for `path`: puts `<path>.bak` back, or removes the
/// file this command wrote when there was none before. A file that does
/// not start with [`HEADER`] is someone else's and stays.
pub fn restore_file(path: &Path) -> std::io::Result<Restored> {
    let path = path.to_path_buf();
    let backup = backup_path(&path);
    let current = match std::fs::read_to_string(&path) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if current.as_deref().is_some_and(|c| !c.starts_with(HEADER)) {
        return Ok(Restored::NotOurs(path));
    }
    if backup.exists() {
        std::fs::rename(&backup, &path)?;
        return Ok(Restored::Backup(path));
    }
    if current.is_none() {
        return Ok(Restored::Absent(path));
    }
    std::fs::remove_file(&path)?;
    Ok(Restored::Removed(path))
}

/// Writes `content` as `<certs_dir>/<dir_name>/hosts.toml`.
pub fn write(certs_dir: &Path, dir_name: &str, content: &str) -> std::io::Result<Written> {
    write_file(&certs_dir.join(dir_name).join("hosts.toml"), content)
}

/// Writes `content` to `path` atomically (creating its directory), keeping
/// a different previous file as `<path>.bak`; an identical file is left alone.
pub fn write_file(path: &Path, content: &str) -> std::io::Result<Written> {
    let path = path.to_path_buf();
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name.to_string_lossy()),
        _ => return Err(std::io::Error::other(format!("{} is not a file path", path.display()))),
    };
    std::fs::create_dir_all(dir)?;
    let backup = match std::fs::read_to_string(&path) {
        Ok(current) if current == content => return Ok(Written::Unchanged(path)),
        // An earlier run's file (an upgrade): the backup, if any, is still
        // what was there before this command, and stays.
        Ok(current) if current.starts_with(HEADER) => None,
        Ok(current) => {
            let backup = backup_path(&path);
            fresh_file(&backup)?.write_all(current.as_bytes())?;
            Some(backup)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = fresh_file(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(Written::Written { path, backup })
}

/// A new file at `path` (0644), replacing whatever was there without
/// following it: this runs as root, and a symlink planted at a predictable
/// name (`.bak`, `.tmp`) must not redirect the write.
fn fresh_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path)
}

/// `<path>.bak`.
fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(name: &str, insecure: bool) -> Option<Registry<'_>> {
        Some(Registry { name, insecure, ca: None })
    }

    #[test]
    fn renders_a_mirror_in_front_of_the_registry() {
        let t = render(registry("docker.io", false), "http://127.0.0.1:4001");
        assert!(t.contains("server = \"https://registry-1.docker.io\""), "{t}");
        assert!(t.contains("[host.\"http://127.0.0.1:4001\"]\n  capabilities = [\"pull\", \"resolve\"]"), "{t}");
        assert!(t.contains("X-Darter-Registry = [\"https://registry-1.docker.io\"]"), "{t}");
        let t = render(registry("10.0.0.1:5000", true), "http://127.0.0.1:4001");
        assert!(t.contains("server = \"http://10.0.0.1:5000\""), "{t}");
        assert!(!t.contains("ca ="), "{t}");
        let private =
            Registry { name: "registry.corp:5000", insecure: false, ca: Some(Path::new("/etc/ssl/corp-ca.crt")) };
        let t = render(Some(private), "http://127.0.0.1:4001");
        assert!(t.contains("server = \"https://registry.corp:5000\"\nca = \"/etc/ssl/corp-ca.crt\"\n"), "{t}");
        assert!(check_ca(Path::new("/etc/ssl/corp-ca.crt")).is_ok());
        for bad in ["relative/ca.crt", "/etc/\"ca\".crt", "/etc/ca\n.crt", "/etc/ca\\.crt"] {
            assert!(check_ca(Path::new(bad)).is_err(), "{bad:?}");
        }
        let t = render(None, "http://127.0.0.1:4001");
        assert!(!t.contains("server") && t.contains("capabilities"), "{t}");
    }

    #[test]
    fn writing_is_idempotent_and_keeps_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ghcr.io")).unwrap();
        std::fs::write(dir.path().join("ghcr.io/hosts.toml"), "server = \"https://ghcr.io\"\n").unwrap();
        let content = render(registry("ghcr.io", false), "http://127.0.0.1:4001");
        let first = write(dir.path(), "ghcr.io", &content).unwrap();
        let backup = dir.path().join("ghcr.io/hosts.toml.bak");
        assert_eq!(
            first,
            Written::Written { path: dir.path().join("ghcr.io/hosts.toml"), backup: Some(backup.clone()) }
        );
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "server = \"https://ghcr.io\"\n");
        assert_eq!(
            write(dir.path(), "ghcr.io", &content).unwrap(),
            Written::Unchanged(dir.path().join("ghcr.io/hosts.toml"))
        );
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "server = \"https://ghcr.io\"\n", "backup kept");
        // An upgrade (another mirror) rewrites this command's own file: the
        // backup is still the file from before the first run.
        let upgraded = render(registry("ghcr.io", false), "http://127.0.0.1:4005");
        assert!(matches!(write(dir.path(), "ghcr.io", &upgraded).unwrap(), Written::Written { backup: None, .. }));
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "server = \"https://ghcr.io\"\n", "backup kept");
        assert!(matches!(write(dir.path(), "quay.io", &content).unwrap(), Written::Written { backup: None, .. }));
        // A symlink planted at the temporary name is replaced, not followed.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("quay.io/.hosts.toml.tmp")).unwrap();
        write(dir.path(), "quay.io", &upgraded).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dir.path().join("quay.io/hosts.toml")).unwrap(), upgraded);

        // Uninstall: the previous file is back, a file that was not there is gone.
        let ghcr = dir.path().join("ghcr.io/hosts.toml");
        assert_eq!(restore(dir.path(), "ghcr.io").unwrap(), Restored::Backup(ghcr.clone()));
        assert_eq!(std::fs::read_to_string(&ghcr).unwrap(), "server = \"https://ghcr.io\"\n");
        assert!(!backup.exists());
        assert_eq!(restore(dir.path(), "ghcr.io").unwrap(), Restored::NotOurs(ghcr), "twice: the file is not ours");
        let quay = dir.path().join("quay.io/hosts.toml");
        assert_eq!(restore(dir.path(), "quay.io").unwrap(), Restored::Removed(quay.clone()));
        assert!(!dir.path().join("quay.io").exists(), "its empty directory too");
        assert_eq!(restore(dir.path(), "quay.io").unwrap(), Restored::Absent(quay));
    }

    #[test]
    fn containerds_config_path_is_read_for_both_versions() {
        let certs = Path::new("/etc/containerd/certs.d");
        let v1 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
        assert_eq!(check_config_path(v1, certs), ConfigPath::Set);
        let v2 = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '/etc/containerd/certs.d' # mirrors\n";
        assert_eq!(check_config_path(v2, certs), ConfigPath::Set);
        let default = "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n      config_path = \"\"\n\n      [plugins.\"io.containerd.grpc.v1.cri\".registry.auths]\n";
        assert_eq!(check_config_path(default, certs), ConfigPath::NotSet);
        let other = "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/docker/certs.d\"\n";
        assert_eq!(check_config_path(other, certs), ConfigPath::Elsewhere("/etc/docker/certs.d".into()));
        let elsewhere_table =
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nconfig_path = \"/etc/containerd/certs.d\"\n";
        assert_eq!(check_config_path(elsewhere_table, certs), ConfigPath::NotSet, "only the registry table counts");
        assert_eq!(check_config_path("", certs), ConfigPath::NotSet);
    }

    #[test]
    fn registry_names_are_checked() {
        assert!(check_registry("docker.io").is_ok());
        assert!(check_registry("10.0.0.1:5000").is_ok());
        assert!(check_registry("../etc").is_err());
        assert!(check_registry("..").is_err());
        assert!(check_registry("a/b").is_err());
        assert!(check_registry("").is_err());
        assert!(check_registry("_default").is_err());
    }
}
