//! Placing a complete task at the caller's output path: a hard link when on
//! the same filesystem and the caller is the daemon's own user, else a copy;
//! always through a temporary name in the target directory and a rename, so
//! the output appears only when whole.
//!
//! Stored content is readable by the daemon's user only (mode 0400), and a
//! hard link shares that mode: a caller of another user (a root daemon, a
//! user's dfget) gets a copy it can read (0644, and its own when the daemon
//! may give it away).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::TaskEntry;

fn out_err(path: &Path, e: &std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return Error::NoSpace(path.display().to_string());
    }
    Error::Output { path: path.display().to_string(), reason: e.to_string() }
}

fn temp_name(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nonce: u64 =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    output.with_file_name(format!(".{name}.darter-{}-{nonce:x}", std::process::id()))
}

/// Who asked for an output: the user and group on the other end of the
/// download socket (its peer credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
}

/// Puts the task's content at `output` for `caller` (`None`: unknown, taken
/// as the daemon's own user). Blocking.
pub fn place_output(entry: &TaskEntry, output: &Path, caller: Option<Caller>) -> Result<()> {
    let dir = output.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(Error::Output {
            path: output.display().to_string(),
            reason: format!("directory {} does not exist", dir.display()),
        });
    }
    if output.is_dir() {
        return Err(Error::Output { path: output.display().to_string(), reason: "is a directory".into() });
    }
    let tmp = temp_name(output);
    let daemon = crate::paths::euid();
    let other = caller.filter(|c| c.uid != daemon);
    let linked = if other.is_none() {
        std::fs::hard_link(entry.content_path(), &tmp)
    } else {
        Err(std::io::Error::other("another user's output is a copy"))
    };
    if linked.is_err() {
        let copied = std::fs::copy(entry.content_path(), &tmp).and_then(|_| {
            // A copy is the caller's file, not the store's: readable, and its own.
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
            match other {
                Some(c) if daemon == 0 => std::os::unix::fs::chown(&tmp, Some(c.uid), Some(c.gid)),
                _ => Ok(()),
            }
        });
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(out_err(output, &e));
        }
    }
    std::fs::rename(&tmp, output).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        out_err(output, &e)
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use darter_common::digest::Digest;
    use darter_common::task_id::TaskId;

    use super::*;
    use crate::storage::{Shape, Storage};

    #[test]
    fn the_daemons_user_gets_a_link_another_user_a_readable_copy() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("data")).unwrap();
        let id = TaskId::parse(&"ab".repeat(32)).unwrap();
        let url = darter_common::secret::redact_url_str("http://h/f");
        let task = storage.open_task(&id, &url, Shape { content_length: Some(4), piece_length: 4, validator: None });
        let task = task.unwrap();
        task.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        task.mark_complete(None).unwrap();
        let content = std::fs::metadata(task.content_path()).unwrap();
        assert_eq!(content.mode() & 0o777, 0o400);

        let mine = dir.path().join("mine");
        place_output(&task, &mine, Some(Caller { uid: crate::paths::euid(), gid: 0 })).unwrap();
        assert_eq!(std::fs::metadata(&mine).unwrap().ino(), content.ino(), "a hard link");

        let stranger = Caller { uid: crate::paths::euid() + 4242, gid: 4242 };
        let theirs = dir.path().join("theirs");
        place_output(&task, &theirs, Some(stranger)).unwrap();
        let meta = std::fs::metadata(&theirs).unwrap();
        assert_ne!(meta.ino(), content.ino(), "a copy, not the store's 0400 inode");
        assert_eq!((meta.mode() & 0o777, std::fs::read(&theirs).unwrap()), (0o644, b"abcd".to_vec()));
        if crate::paths::euid() == 0 {
            assert_eq!((meta.uid(), meta.gid()), (stranger.uid, stranger.gid), "given to the caller");
        }
    }
}
