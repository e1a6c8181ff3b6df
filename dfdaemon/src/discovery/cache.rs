//! The manager's last good answer on disk, `<data_dir>/manager/schedulers.json`,
//! so a daemon that starts while the manager is down still finds its
//! schedulers. Written whole to a temporary file, flushed and renamed over the
//! old one, so a crash never leaves a torn file; blocking I/O (callers use
//! `spawn_blocking`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The file under the data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("manager").join("schedulers.json")
}

/// What is kept of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    /// When it was saved, Unix seconds.
    pub saved_at: u64,
    /// The manager that answered.
    pub manager: String,
    /// The matched cluster.
    pub cluster_id: u64,
    /// Its name.
    pub cluster_name: String,
    /// Its active schedulers' gRPC addresses, in hash order.
    pub schedulers: Vec<SocketAddr>,
}

impl CachedAnswer {
    /// An answer saved now.
    pub fn now(manager: String, cluster_id: u64, cluster_name: String, schedulers: Vec<SocketAddr>) -> Self {
        let saved_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { saved_at, manager, cluster_id, cluster_name, schedulers }
    }

    /// How old it is (zero if the clock went back).
    pub fn age(&self) -> Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Duration::from_secs(now.saturating_sub(self.saved_at))
    }
}

/// Saves `answer` atomically (temporary file, fsync, rename), readable by
/// the daemon's user only.
pub fn save(data_dir: &Path, answer: &CachedAnswer) -> std::io::Result<()> {
    let path = path(data_dir);
    let dir = path.parent().expect("a file under a directory");
    crate::private_fs::create_dir_all(dir)?;
    crate::private_fs::tighten(dir)?;
    let tmp = dir.join(format!("schedulers.json.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = crate::private_fs::create_new(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(answer).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The saved answer; `Ok(None)` when there is none. A file that cannot be
/// parsed is an error naming it (it is never used half-read).
pub fn load(data_dir: &Path) -> Result<Option<CachedAnswer>, String> {
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{} is not a saved answer: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_answers_load_back_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Ok(None));
        let answer = CachedAnswer::now("m:65003".into(), 1, "default".into(), vec!["10.0.0.1:8002".parse().unwrap()]);
        save(dir.path(), &answer).unwrap();
        assert_eq!(load(dir.path()), Ok(Some(answer.clone())));
        assert!(answer.age() < Duration::from_secs(5));
        let newer = CachedAnswer { cluster_id: 2, ..answer };
        save(dir.path(), &newer).unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().cluster_id, 2, "replaced");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("manager")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");

        std::fs::write(path(dir.path()), b"{\"saved_at\": 1").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.contains("schedulers.json"), "{e}");
    }
}
