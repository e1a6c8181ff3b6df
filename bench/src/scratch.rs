//! The scratch directory a single-node benchmark works in, with the random
//! file it serves.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// A scratch directory under `workdir` (named `<prefix>…`, removed when
/// dropped) holding `blob`, `size` fresh random bytes; with the blob's path
/// and its sha256 (hex).
pub async fn scratch_with_blob(
    workdir: &Path,
    prefix: &str,
    size: u64,
) -> anyhow::Result<(tempfile::TempDir, PathBuf, String)> {
    std::fs::create_dir_all(workdir).with_context(|| format!("create workdir {}", workdir.display()))?;
    let scratch = tempfile::Builder::new().prefix(prefix).tempdir_in(workdir).context("create scratch dir")?;
    let blob = scratch.path().join("blob");
    eprintln!("writing {size} random bytes to {}", blob.display());
    let seed = rand::random::<u64>();
    let digest = tokio::task::spawn_blocking({
        let blob = blob.clone();
        move || testkit::data::write_random_file(blob, size, seed)
    })
    .await?
    .context("write random file")?;
    Ok((scratch, blob, digest))
}
