//! Local storage: one directory per task under `<data_dir>/tasks/<task id>/`
//! holding `content` (pieces at their offsets), `task.json` and `pieces.log`.
//! Directory names come only from validated [`TaskId`]s, never from paths
//! received over the network.

mod gc;
mod record;
mod task;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use darter_common::task_id::TaskId;

pub use gc::{GcPolicy, run_gc_loop};
pub use record::TaskRecord;
pub use task::{Lease, StoredPiece, TaskEntry};

use crate::error::{Error, Result};

/// All tasks on this node.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    tasks: Mutex<HashMap<TaskId, Arc<TaskEntry>>>,
}

impl Storage {
    /// Opens (creating if needed) the storage under `data_dir`, loading every
    /// task left by a previous run; unreadable task directories are removed.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("tasks");
        std::fs::create_dir_all(&root).map_err(|e| Error::storage(&format!("create {}", root.display()), &e))?;
        let mut tasks = HashMap::new();
        let entries = std::fs::read_dir(&root).map_err(|e| Error::storage("list tasks", &e))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            match TaskEntry::load(dir.clone()) {
                Ok(task) if dir.file_name().is_some_and(|n| *n == *task.id().file_name()) => {
                    tasks.insert(task.id().clone(), Arc::new(task));
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(dir = %dir.display(), "removing unreadable task directory");
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        tracing::info!(root = %root.display(), tasks = tasks.len(), "storage opened");
        Ok(Self { root, tasks: Mutex::new(tasks) })
    }

    /// A task, if stored.
    pub fn get(&self, id: &TaskId) -> Option<Arc<TaskEntry>> {
        self.tasks.lock().expect("storage lock").get(id).cloned()
    }

    /// Every stored task.
    pub fn list(&self) -> Vec<Arc<TaskEntry>> {
        self.tasks.lock().expect("storage lock").values().cloned().collect()
    }

    /// The task with this geometry: the stored one when it matches (resume),
    /// else a fresh one replacing it. Blocking (creates files).
    pub fn open_task(
        &self,
        id: &TaskId,
        url: &str,
        content_length: Option<u64>,
        piece_length: u64,
    ) -> Result<Arc<TaskEntry>> {
        let mut tasks = self.tasks.lock().expect("storage lock");
        if let Some(existing) = tasks.get(id) {
            let same = existing.piece_length() == piece_length
                && (existing.content_length() == content_length || content_length.is_none());
            if same {
                return Ok(existing.clone());
            }
            if existing.in_use() {
                return Err(Error::TaskBusy(id.to_string()));
            }
            tracing::info!(task_id = %id, "stored task has another geometry; starting over");
            let _ = std::fs::remove_dir_all(existing.dir());
            tasks.remove(id);
        }
        let now = record::unix_now();
        let rec = TaskRecord {
            version: record::RECORD_VERSION,
            id: id.to_string(),
            url: url.to_string(),
            content_length,
            piece_length,
            digest: None,
            complete: false,
            created_at: now,
            accessed_at: now,
        };
        let entry = Arc::new(TaskEntry::create(self.root.join(id.file_name()), rec)?);
        tasks.insert(id.clone(), entry.clone());
        Ok(entry)
    }

    /// Removes a task; refused while it is in use unless `force`. Blocking.
    pub fn remove(&self, id: &TaskId, force: bool) -> Result<()> {
        let mut tasks = self.tasks.lock().expect("storage lock");
        let entry = tasks.get(id).ok_or_else(|| Error::TaskNotFound(id.to_string()))?;
        if entry.in_use() && !force {
            return Err(Error::TaskBusy(id.to_string()));
        }
        let dir = entry.dir().to_path_buf();
        tasks.remove(id);
        drop(tasks);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::storage("remove task", &e))
    }

    /// Bytes used by Darter's own tasks.
    pub fn used_bytes(&self) -> u64 {
        self.list().iter().map(|t| t.disk_bytes()).sum()
    }

    /// The data directory's tasks root (for disk statistics).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use darter_common::digest::Digest;

    use super::*;

    fn id(n: u8) -> TaskId {
        TaskId::parse(&hex_id(n)).unwrap()
    }
    fn hex_id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn pieces_survive_a_restart_and_only_verified_ones_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let t = s.open_task(&id(1), "http://h/f", Some(10), 4).unwrap();
        t.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        t.write_piece(2, 8, &[b"ij"], Digest::of(b"ij")).unwrap();
        assert!(t.write_piece(1, 4, &[b"toolong"], Digest::of(b"x")).is_err());
        assert_eq!(t.missing_pieces(), vec![1]);
        drop(s);
        let s = Storage::open(dir.path()).unwrap();
        let t = s.get(&id(1)).unwrap();
        assert_eq!(t.missing_pieces(), vec![1]);
        assert!(!t.is_complete());
        assert!(t.mark_complete(None).is_err(), "incomplete task cannot be marked complete");
        t.write_piece(1, 4, &[b"efgh"], Digest::of(b"efgh")).unwrap();
        t.mark_complete(None).unwrap();
        t.persist_complete().unwrap();
        let (p, bytes) = t.read_piece(1).unwrap();
        assert_eq!((&bytes[..], p.digest), (&b"efgh"[..], Digest::of(b"efgh")));
        drop(s);
        let s = Storage::open(dir.path()).unwrap();
        assert!(s.get(&id(1)).unwrap().is_complete());
    }

    #[test]
    fn other_geometry_starts_over_and_garbage_dirs_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tasks/not-a-task")).unwrap();
        let s = Storage::open(dir.path()).unwrap();
        assert!(s.list().is_empty());
        assert!(!dir.path().join("tasks/not-a-task").exists());
        let t = s.open_task(&id(2), "http://h/f", Some(8), 4).unwrap();
        t.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        drop(t);
        let t = s.open_task(&id(2), "http://h/f", Some(8), 4).unwrap();
        assert_eq!(t.missing_pieces(), vec![1], "same geometry resumes");
        drop(t);
        let t = s.open_task(&id(2), "http://h/f", Some(12), 4).unwrap();
        assert_eq!(t.missing_pieces(), vec![0, 1, 2], "new geometry starts over");
        let lease = t.lease();
        assert!(matches!(s.remove(&id(2), false), Err(Error::TaskBusy(_))));
        drop(lease);
        s.remove(&id(2), false).unwrap();
        assert!(s.get(&id(2)).is_none());
    }

    #[test]
    fn partial_pieces_whose_bytes_changed_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let t = s.open_task(&id(3), "http://h/f", Some(8), 4).unwrap();
        t.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        t.write_piece(1, 4, &[b"efgh"], Digest::of(b"efgh")).unwrap();
        let content = t.content_path();
        drop((t, s));
        // A power loss that kept the log line but not the bytes.
        std::fs::write(&content, b"abcd\0\0\0\0").unwrap();
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get(&id(3)).unwrap().missing_pieces(), vec![1]);
    }
}
