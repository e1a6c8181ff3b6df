//! Files and directories only the daemon's user may read: task content can
//! be a private image's layers, and `task.json` names where it came from.
//! Directories are created 0700 and files 0600 (content 0400 once complete)
//! as they are made, never opened wider and narrowed afterwards; what an
//! older version left wider is narrowed when the daemon starts
//! ([`tighten`]). The umask can only narrow these further.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of the daemon's directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the daemon's files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parent, each 0700. An existing directory is
/// left as it is (it may be shared, like `/var/lib`).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a file 0600 (when they create it).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates `path` anew, 0600, for writing: a file left at that name (a
/// temporary file of a crashed write, possibly wider) is removed first, so
/// the mode is always the one given here.
pub fn create_new(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    options().write(true).create_new(true).open(path)
}

/// Takes group and other permissions off `path` (a file or directory this
/// daemon made, maybe in an older version that made it wider); the owner's
/// bits stay. A symlink is left alone (never followed).
pub fn tighten(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_private_and_older_ones_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir_all(&nested).unwrap();
        assert_eq!((mode(&dir.path().join("a")), mode(&nested)), (0o700, 0o700));
        let f = nested.join("f");
        std::fs::write(&f, b"wide").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_new(&f).unwrap();
        assert_eq!(mode(&f), 0o600, "a wider leftover is replaced, not reused");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444)).unwrap();
        tighten(&f).unwrap();
        assert_eq!(mode(&f), 0o400, "only group and other bits go");
        std::fs::set_permissions(&nested, std::fs::Permissions::from_mode(0o755)).unwrap();
        tighten(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
    }
}
