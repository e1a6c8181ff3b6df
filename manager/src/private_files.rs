//! Files no other local user may read.
//!
//! The SQLite database holds the password hashes, the access-token hashes and
//! the generated JWT key: a local user who can read it can mint a root token.
//! So at start, before the database is opened, [`secure_sqlite`] makes the
//! database and its `-wal`, `-shm` and `-journal` files 0600 (SQLite gives the
//! files it creates the database file's mode, so creating the database 0600
//! covers the others), and its directory 0700 when the manager creates it. An
//! existing directory is tightened to 0700, with a warning, only when it is
//! the manager's own: owned by its user and holding nothing but the database,
//! its side files and the manager's secret files. Any other (`/var/lib`, `/`,
//! a sticky `/tmp`, another user's) is left as it is, with a warning, since
//! others need it. A database file that cannot be made 0600 stops the start.
//!
//! Why the JWT key stays in the database: it is exactly as secret as the rest
//! of it (whoever reads the file reads the hashes; whoever writes it can make a
//! root user), a key file next to it would be protected by the same file mode,
//! and with PostgreSQL or MySQL the database is how replicas agree on the key.
//! What changes is what happens when the file *was* readable by others (a
//! database created by an earlier version, 0644): [`SqliteFiles::was_exposed`]
//! tells `auth` to replace a generated key, so tokens minted with a key read
//! from the old file stop working.
//!
//! [`write_secret`] writes a secret file (the generated root password) 0600,
//! through a new temporary file renamed into place, so a link planted at the
//! name is replaced, not written through; [`tighten_secret`] closes one found
//! open at start.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

/// Mode of the database files and of every secret file.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a directory the manager creates for them.
pub const DIR_MODE: u32 = 0o700;

/// Suffixes of the files SQLite keeps next to a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// What [`secure_sqlite`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SqliteFiles {
    /// The database file; `None` for an in-memory database or another backend.
    pub path: Option<PathBuf>,
    /// The database or one of its side files was readable by other users
    /// before this start: whatever it held may have been read.
    pub was_exposed: bool,
}

/// Makes the SQLite database named by `url` private (see the module doc):
/// creates its directory 0700 if missing, tightens it if it is the manager's
/// own (`secrets` are the manager's other files that may live there), creates
/// the database file 0600 when the URL creates it (`mode=rwc`), and makes the
/// database and its side files 0600. Other URLs are left alone.
pub fn secure_sqlite(url: &str, secrets: &[&Path]) -> io::Result<SqliteFiles> {
    let Some((path, create)) = sqlite_file(url) else { return Ok(SqliteFiles::default()) };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The names the manager's files have in `dir` (a secret's temporary
    // file starts with the secret's name).
    let mut ours: Vec<std::ffi::OsString> = path.file_name().map(ToOwned::to_owned).into_iter().collect();
    ours.extend(
        secrets
            .iter()
            .filter(|s| s.parent() == Some(dir.as_path()))
            .filter_map(|s| s.file_name())
            .map(ToOwned::to_owned),
    );
    let is_ours =
        |name: &std::ffi::OsStr| ours.iter().any(|o| name.as_encoded_bytes().starts_with(o.as_encoded_bytes()));
    secure_dir(&dir, &is_ours)?;
    let mut was_exposed = false;
    let side = SIDE_FILES.iter().map(|suffix| {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    });
    for file in std::iter::once(path.clone()).chain(side) {
        let mode = match std::fs::metadata(&file) {
            Ok(m) => m.mode() & 0o7777,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(with_path(&file, "cannot read the mode of", e)),
        };
        if mode & 0o077 == 0 {
            continue;
        }
        was_exposed |= mode & 0o044 != 0;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| with_path(&file, "cannot make private (mode 0600)", e))?;
        tracing::warn!(file = %file.display(), was = format!("{mode:04o}"), "database file was open to other users; now 0600");
    }
    if create && !path.exists() {
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(&path) {
            // Exactly 0600, whatever the umask.
            Ok(_) => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| with_path(&path, "cannot make private (mode 0600)", e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(with_path(&path, "cannot create", e)),
        }
    }
    Ok(SqliteFiles { path: Some(path), was_exposed })
}

/// The database file of a SQLite URL and whether the URL creates it; `None`
/// for other schemes and in-memory databases.
fn sqlite_file(url: &str) -> Option<(PathBuf, bool)> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let mode = form_urlencoded::parse(params.as_bytes()).find(|(k, _)| k == "mode").map(|(_, v)| v.into_owned());
    if database.is_empty() || database == ":memory:" || mode.as_deref() == Some("memory") {
        return None;
    }
    // sqlx's own reading of the path (percent-decoding included), so this is
    // the file it opens.
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some((options.get_filename().to_path_buf(), mode.as_deref() == Some("rwc")))
}

/// Creates `dir` 0700 if missing (its missing parents get the usual mode, as
/// other services may share them), or tightens it to 0700 if it is the
/// manager's own: owned by this user, not sticky, and every entry `is_ours`.
/// Warns when it stays open.
fn secure_dir(dir: &Path, is_ours: &dyn Fn(&std::ffi::OsStr) -> bool) -> io::Result<()> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create_private_dir(dir, is_ours),
        Err(e) => return Err(with_path(dir, "cannot read", e)),
    };
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", dir.display())));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let sticky = mode & 0o1000 != 0;
    let shared = sticky
        || meta.uid() != effective_uid()
        || std::fs::read_dir(dir)
            .map_err(|e| with_path(dir, "cannot list", e))?
            .any(|entry| entry.map_or(true, |e| !is_ours(&e.file_name())));
    if shared {
        tracing::warn!(
            dir = %dir.display(), mode = format!("{mode:04o}"), owner = meta.uid(),
            "the database directory is shared (other files, sticky, or another user's) and stays as it is; \
             the database files are 0600, but give the database a directory of its own"
        );
        return Ok(());
    }
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)) {
        Ok(()) => tracing::warn!(
            dir = %dir.display(), was = format!("{mode:04o}"),
            "database directory was open to other users; now 0700"
        ),
        Err(e) => tracing::warn!(
            dir = %dir.display(), mode = format!("{mode:04o}"), error = %e,
            "cannot make the database directory private (0700); the database files are 0600"
        ),
    }
    Ok(())
}

/// Creates `dir` with mode 0700 (its missing parents with the usual mode).
fn create_private_dir(dir: &Path, is_ours: &dyn Fn(&std::ffi::OsStr) -> bool) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| with_path(parent, "cannot create", e))?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        // Created by someone else meanwhile: tighten it like an existing one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return secure_dir(dir, is_ours),
        Err(e) => return Err(with_path(dir, "cannot create", e)),
    }
    // Exactly 0700, whatever the umask.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| with_path(dir, "cannot make private (mode 0700)", e))
}

/// Makes the existing secret file `path` 0600 if it is open to others
/// (warning that it was); a missing file is fine.
pub fn tighten_secret(path: &Path) -> io::Result<()> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(path, "cannot read the mode of", e)),
    };
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| with_path(path, "cannot make private (mode 0600)", e))?;
        tracing::warn!(file = %path.display(), was = format!("{mode:04o}"), "secret file was open to other users; now 0600");
    }
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, replacing what is there (a
/// planted link included, never followed). A missing directory is created 0700.
pub fn write_secret(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        create_private_dir(dir, &|_| false)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .and_then(|mut f| {
            f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
            f.write_all(contents)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.inspect_err(|e| {
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&tmp);
        }
    })
}

fn with_path(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail; the binding is
    // declared unsafe only because every FFI call is.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn only_file_databases_are_touched() {
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://:memory:"), None);
        assert_eq!(sqlite_file("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_file("sqlite:///var/lib/d/m.db?mode=rwc"), Some(("/var/lib/d/m.db".into(), true)));
        assert_eq!(sqlite_file("sqlite://rel/m%20x.db"), Some(("rel/m x.db".into(), false)));
    }

    #[test]
    fn a_new_database_is_0600_in_a_new_0700_directory_under_usual_parents() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("parent/data");
        let url = format!("sqlite://{}?mode=rwc", dir.join("m.db").display());
        let found = secure_sqlite(&url, &[]).unwrap();
        assert_eq!(found, SqliteFiles { path: Some(dir.join("m.db")), was_exposed: false });
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("m.db")), 0o600);
        assert_ne!(mode(&root.path().join("parent")), 0o700, "a parent others may share keeps its mode");
    }

    #[test]
    fn an_open_database_and_directory_of_ours_are_tightened_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["m.db", "m.db-wal", "secret"] {
            std::fs::write(dir.join(name), b"x").unwrap();
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let url = format!("sqlite://{}", dir.join("m.db").display());
        let found = secure_sqlite(&url, &[&dir.join("secret")]).unwrap();
        assert!(found.was_exposed);
        assert_eq!((mode(&dir), mode(&dir.join("m.db")), mode(&dir.join("m.db-wal"))), (0o700, 0o600, 0o600));
        let again = secure_sqlite(&url, &[&dir.join("secret")]).unwrap();
        assert!(!again.was_exposed, "private files are not reported again");
    }

    #[test]
    fn a_directory_holding_other_files_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var-lib");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.join("postgresql")).unwrap();
        let found = secure_sqlite(&format!("sqlite://{}?mode=rwc", dir.join("m.db").display()), &[]).unwrap();
        assert_eq!(mode(&dir), 0o755, "another service's files are there");
        assert_eq!(mode(&dir.join("m.db")), 0o600);
        assert!(!found.was_exposed);
    }

    #[test]
    fn a_sticky_shared_directory_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        secure_sqlite(&format!("sqlite://{}?mode=rwc", dir.join("m.db").display()), &[]).unwrap();
        assert_eq!(mode(&dir), 0o1777);
        assert_eq!(mode(&dir.join("m.db")), 0o600);
    }

    #[test]
    fn secrets_are_0600_and_replace_a_planted_link() {
        let root = tempfile::tempdir().unwrap();
        let (path, victim) = (root.path().join("new/secret"), root.path().join("victim"));
        write_secret(&path, b"one").unwrap();
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
        std::fs::write(&victim, b"keep").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_secret(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!((std::fs::read(&path).unwrap(), mode(&path)), (b"two".to_vec(), 0o600));
    }
}
