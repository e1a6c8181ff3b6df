//! Placing a complete task at the caller's output path: a hard link when on
//! the same filesystem, else a copy; always through a temporary name in the
//! target directory and a rename, so the output appears only when whole.

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

/// Puts the task's content at `output`. Blocking.
pub fn place_output(entry: &TaskEntry, output: &Path) -> Result<()> {
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
    let linked = std::fs::hard_link(entry.content_path(), &tmp);
    if linked.is_err() {
        let copied = std::fs::copy(entry.content_path(), &tmp);
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
