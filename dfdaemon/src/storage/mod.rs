//! Local storage: one directory per copy of a task under
//! `<data_dir>/tasks/<task id>.<nonce>/` holding `content` (pieces at their
//! offsets), `task.json` and `pieces.log`. Directory names come only from
//! validated [`TaskId`]s (never from paths received over the network), and a
//! task that is replaced or removed never shares a directory with its
//! successor, so a late writer of the old copy cannot touch the new one.

mod gc;
mod record;
mod task;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use darter_common::secret::RedactedUrl;
use darter_common::sync::MutexExt as _;
use darter_common::task_id::TaskId;

pub use gc::{GcPolicy, run_gc_loop};
pub use record::TaskRecord;
pub use task::{Lease, StoredPiece, TaskEntry};

use crate::error::{Error, Result};

/// What a task's content looks like, as the origin described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Content length, when known.
    pub content_length: Option<u64>,
    /// Piece length.
    pub piece_length: u64,
    /// The origin's validator (ETag or Last-Modified), when it gave one.
    pub validator: Option<String>,
}

/// All tasks on this node.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    tasks: Mutex<HashMap<TaskId, Arc<TaskEntry>>>,
    nonce: AtomicU64,
}

fn dir_belongs_to(dir: &Path, id: &TaskId) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(&id.file_name()))
        .is_some_and(|rest| rest.starts_with('.'))
}

impl Storage {
    /// Opens (creating if needed) the storage under `data_dir`, loading every
    /// task left by a previous run; unreadable task directories are removed.
    /// Directories are made 0700 and files 0600 ([`crate::private_fs`]); what
    /// an older version made wider is narrowed here. Blocking (partial tasks
    /// are re-verified).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("tasks");
        crate::private_fs::create_dir_all(&root)
            .map_err(|e| Error::storage(&format!("create {}", root.display()), &e))?;
        if let Err(e) = crate::private_fs::tighten(&root) {
            tracing::warn!(dir = %root.display(), error = %e, "cannot make the tasks directory private to the daemon");
        }
        let mut tasks: HashMap<TaskId, Arc<TaskEntry>> = HashMap::new();
        let entries = std::fs::read_dir(&root).map_err(|e| Error::storage("list tasks", &e))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            match TaskEntry::load(dir.clone()) {
                Ok(task) if dir_belongs_to(&dir, task.id()) && !tasks.contains_key(task.id()) => {
                    tasks.insert(task.id().clone(), Arc::new(task));
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(dir = %dir.display(), "removing unreadable or duplicate task directory");
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        tracing::info!(root = %root.display(), tasks = tasks.len(), "storage opened");
        let nonce = AtomicU64::new(record::unix_now_nanos());
        Ok(Self { root, tasks: Mutex::new(tasks), nonce })
    }

    /// A task, if stored.
    pub fn get(&self, id: &TaskId) -> Option<Arc<TaskEntry>> {
        self.tasks.locked().get(id).cloned()
    }

    /// A lease on a stored task, taken under the storage lock so that GC and
    /// removal see it.
    pub fn lease(&self, id: &TaskId) -> Option<Lease> {
        self.tasks.locked().get(id).map(|t| t.lease())
    }

    /// Every stored task.
    pub fn list(&self) -> Vec<Arc<TaskEntry>> {
        self.tasks.locked().values().cloned().collect()
    }

    /// A lease on the task with this shape: the stored copy when it matches
    /// (resume), else a fresh copy replacing it; `url` is what its record
    /// will show. Blocking (creates files).
    pub fn open_task(&self, id: &TaskId, url: &RedactedUrl, shape: Shape) -> Result<Lease> {
        let mut stale = None;
        let lease = {
            let mut tasks = self.tasks.locked();
            if let Some(existing) = tasks.get(id) {
                let r = existing.record();
                let same = r.piece_length == shape.piece_length
                    && (r.content_length == shape.content_length || shape.content_length.is_none())
                    // No validator on either side (a peer-to-peer copy, or an
                    // origin without one) cannot tell versions apart: compatible.
                    && (r.validator == shape.validator || shape.validator.is_none() || r.validator.is_none());
                if same {
                    return Ok(existing.lease());
                }
                if existing.in_use() {
                    return Err(Error::TaskBusy(id.to_string()));
                }
                tracing::info!(task_id = %id, "stored task has another shape or validator; starting over");
                stale = tasks.remove(id);
            }
            let now = record::unix_now();
            let rec = TaskRecord {
                version: record::RECORD_VERSION,
                id: id.to_string(),
                url: url.to_string(),
                content_length: shape.content_length,
                piece_length: shape.piece_length,
                validator: shape.validator,
                digest: None,
                complete: false,
                created_at: now,
                accessed_at: now,
            };
            let dir = self.root.join(format!("{}.{:x}", id.file_name(), self.nonce.fetch_add(1, Ordering::Relaxed)));
            let entry = Arc::new(TaskEntry::create(dir, rec)?);
            tasks.insert(id.clone(), entry.clone());
            entry.lease()
        };
        if let Some(old) = stale {
            old.discard();
        }
        Ok(lease)
    }

    /// Removes a task; refused while it is in use unless `force`. Blocking.
    pub fn remove(&self, id: &TaskId, force: bool) -> Result<()> {
        let entry = {
            let mut tasks = self.tasks.locked();
            let entry = tasks.get(id).ok_or_else(|| Error::TaskNotFound(id.to_string()))?;
            if entry.in_use() && !force {
                return Err(Error::TaskBusy(id.to_string()));
            }
            tasks.remove(id).expect("present under the lock")
        };
        entry.discard();
        Ok(())
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
    use darter_common::secret::redact_url_str;

    use super::*;

    fn id(n: u8) -> TaskId {
        TaskId::parse(&hex_id(n)).unwrap()
    }
    fn hex_id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }
    fn shape(content_length: Option<u64>, piece_length: u64) -> Shape {
        Shape { content_length, piece_length, validator: None }
    }

    #[test]
    fn pieces_survive_a_restart_and_only_verified_ones_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let t = s.open_task(&id(1), &redact_url_str("http://h/f"), shape(Some(10), 4)).unwrap();
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
        let t = s.open_task(&id(2), &redact_url_str("http://h/f"), shape(Some(8), 4)).unwrap();
        t.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        drop(t);
        let t = s.open_task(&id(2), &redact_url_str("http://h/f"), shape(Some(8), 4)).unwrap();
        assert_eq!(t.missing_pieces(), vec![1], "same geometry resumes");
        drop(t);
        let t = s.open_task(&id(2), &redact_url_str("http://h/f"), shape(Some(12), 4)).unwrap();
        assert_eq!(t.missing_pieces(), vec![0, 1, 2], "new geometry starts over");
        assert!(matches!(s.remove(&id(2), false), Err(Error::TaskBusy(_))), "a leased task stays");
        let other = s.lease(&id(2)).unwrap();
        drop(t);
        assert!(matches!(s.remove(&id(2), false), Err(Error::TaskBusy(_))));
        drop(other);
        s.remove(&id(2), false).unwrap();
        assert!(s.get(&id(2)).is_none());
    }

    /// A forced removal frees an incomplete task's bytes at once, though a
    /// writer or uploader still holds the file, and no write lands after it;
    /// a complete task's content (perhaps a user's output, hard-linked) is
    /// only unlinked, its bytes intact for whoever holds it.
    #[test]
    fn a_forced_removal_frees_an_incomplete_task_and_stops_its_writers() {
        use std::os::unix::fs::FileExt as _;
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let partial = s.open_task(&id(3), &redact_url_str("http://h/p"), shape(Some(8), 4)).unwrap();
        partial.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        s.remove(&id(3), true).unwrap();
        assert_eq!(partial.content_file().metadata().unwrap().len(), 0, "freed while still open");
        assert!(partial.write_piece(1, 4, &[b"efgh"], Digest::of(b"efgh")).is_err(), "no write after removal");

        let whole = s.open_task(&id(4), &redact_url_str("http://h/w"), shape(Some(4), 4)).unwrap();
        whole.write_piece(0, 0, &[b"wxyz"], Digest::of(b"wxyz")).unwrap();
        whole.mark_complete(None).unwrap();
        let output = dir.path().join("output");
        let task_dir = std::fs::read_dir(dir.path().join("tasks"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&hex_id(4))))
            .expect("the task's directory");
        std::fs::hard_link(task_dir.join("content"), &output).unwrap();
        s.remove(&id(4), true).unwrap();
        assert_eq!(std::fs::read(&output).unwrap(), b"wxyz", "a complete task's output keeps its bytes");
        let mut buf = [0u8; 4];
        whole.content_file().read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"wxyz");
    }

    /// `task.json` as the first daemon wrote it (commit b6b509d, format
    /// version 1): `serde_json::to_vec_pretty` of its `TaskRecord`, fields in
    /// its order, written by hand from that code. It has no `validator`: that
    /// field came later (with `#[serde(default)]`, the version unchanged). The
    /// task: a 300000-byte download fetched with `--digest` (so addressed by
    /// it), complete, whole digest verified.
    const TASK_V1: &str = include_str!("fixtures/task-v1.json");
    const V1_URL: &str = "http://origin.example/releases/app-1.0.tar.gz";
    const V1_DIGEST: &str = "sha256:3c65ea93424a9c362fec0e3a69ea36031e8a358441479dd665cc6110eabe7b08";
    /// Its `pieces.log` (a format unchanged since): two pieces of 256 KiB and the rest.
    const PIECES_V1: &str = "0 262144 sha256:31a1f9dea0169551092d05e8bf4a446228c8c3eb4c9b713c66adcb7fd53c89be\n\
                             1 37856 sha256:371e561a4a03aa7599de805ab6695e156809fcdbd2a6a404b65e0b65180239d5\n";

    /// The fixture task's content: byte `i` is `i mod 251`.
    fn v1_content() -> Vec<u8> {
        (0..300_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_task_an_old_daemon_wrote_reads_as_it_meant() {
        assert!(!TASK_V1.contains("validator"), "the fixture is the format from before validators");
        let content = v1_content();
        let digest: Digest = V1_DIGEST.parse().unwrap();
        assert_eq!(Digest::of(&content), digest, "the fixture's content");
        // Today's ID of the same download is the ID the old daemon stored.
        let id = TaskId::for_download(V1_URL, Some(&digest), "", "").unwrap();
        // The old daemon named the directory `<id>`; today's layout names a
        // copy `<id>.<nonce>` (and drops a directory named otherwise).
        let dir = tempfile::tempdir().unwrap();
        let task_dir = dir.path().join("tasks").join(format!("{}.1", id.file_name()));
        std::fs::create_dir_all(&task_dir).unwrap();
        std::fs::write(task_dir.join("task.json"), TASK_V1).unwrap();
        std::fs::write(task_dir.join("content"), &content).unwrap();
        std::fs::write(task_dir.join("pieces.log"), PIECES_V1).unwrap();

        let s = Storage::open(dir.path()).unwrap();
        let t = s.get(&id).expect("the old task is loaded, not dropped");
        assert_eq!(
            t.record(),
            TaskRecord {
                version: 1,
                id: V1_DIGEST.into(),
                url: V1_URL.into(),
                content_length: Some(300_000),
                piece_length: 262_144,
                // Unknown: the old daemon kept none.
                validator: None,
                digest: Some(V1_DIGEST.into()),
                complete: true,
                created_at: 1_795_339_800,
                accessed_at: 1_795_345_517,
            }
        );
        // What the fields meant: complete is every piece present and the whole
        // digest verified; accessed_at is the TTL clock.
        assert!(t.is_complete());
        assert_eq!((t.content_length(), t.piece_length()), (Some(300_000), 262_144));
        assert!(t.missing_pieces().is_empty());
        let pieces: Vec<(u32, u64, u64)> = t.pieces().iter().map(|p| (p.number, p.offset, p.length)).collect();
        assert_eq!(pieces, vec![(0, 0, 262_144), (1, 262_144, 37_856)]);
        assert_eq!(t.accessed_at(), 1_795_345_517);
        let (piece, bytes) = t.read_piece(1).unwrap();
        assert_eq!((&bytes[..], piece.digest), (&content[262_144..], Digest::of(&content[262_144..])));

        // The origin now names a validator: with the same geometry the stored
        // copy (which has none, so cannot tell versions apart) is kept.
        let shape = Shape { content_length: Some(300_000), piece_length: 262_144, validator: Some("\"v2\"".into()) };
        let lease = s.open_task(&id, &redact_url_str(V1_URL), shape).unwrap();
        assert_eq!(lease.content_path(), task_dir.join("content"), "the same copy, not a fresh one");
        assert!(lease.is_complete());

        // Written again (the access time GC persists), it stays version 1 and
        // gains an explicit `"validator": null`, meaning the same.
        t.persist_access().unwrap();
        let rewritten = std::fs::read_to_string(task_dir.join("task.json")).unwrap();
        assert!(rewritten.contains("\"validator\": null"), "{rewritten}");
        let reread = record::read_record(&task_dir.join("task.json")).unwrap();
        assert_ne!(t.accessed_at(), 1_795_345_517, "the lease is an access");
        assert_eq!(reread.accessed_at, t.accessed_at(), "the access was persisted");
        assert_eq!(reread, TaskRecord { accessed_at: reread.accessed_at, ..t.record() });
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn only_the_daemons_user_reads_tasks_and_what_an_older_version_left_is_narrowed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let s = Storage::open(&data).unwrap();
        assert_eq!((mode(&data), mode(&data.join("tasks"))), (0o700, 0o700));
        let t = s.open_task(&id(4), &redact_url_str("https://h/f?X-Amz-Signature=hunter2"), shape(Some(4), 4)).unwrap();
        t.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        t.mark_complete(None).unwrap();
        t.persist_complete().unwrap();
        let task_dir = t.content_path().parent().unwrap().to_path_buf();
        let file = |name: &str| task_dir.join(name);
        assert_eq!(mode(&task_dir), 0o700);
        assert_eq!((mode(&file("task.json")), mode(&file("pieces.log"))), (0o600, 0o600));
        assert_eq!(mode(&file("content")), 0o400, "complete content is read-only, for its user only");
        assert!(!std::fs::read_to_string(file("task.json")).unwrap().contains("hunter2"));
        drop((t, s));

        // As an older version left it: readable by everyone, a signed URL in clear.
        let wide = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        wide(&data.join("tasks"), 0o755);
        wide(&task_dir, 0o755);
        wide(&file("content"), 0o444);
        wide(&file("pieces.log"), 0o644);
        let json = std::fs::read_to_string(file("task.json")).unwrap();
        std::fs::write(file("task.json"), json.replace("X-Amz-Signature=REDACTED", "X-Amz-Signature=hunter2")).unwrap();
        wide(&file("task.json"), 0o644);
        let s = Storage::open(&data).unwrap();
        assert!(s.get(&id(4)).unwrap().is_complete(), "the task is kept");
        assert_eq!((mode(&data.join("tasks")), mode(&task_dir)), (0o700, 0o700));
        assert_eq!(
            (mode(&file("task.json")), mode(&file("pieces.log")), mode(&file("content"))),
            (0o600, 0o600, 0o400)
        );
        let json = std::fs::read_to_string(file("task.json")).unwrap();
        assert!(!json.contains("hunter2") && json.contains("X-Amz-Signature=REDACTED"), "{json}");
        assert_eq!(s.get(&id(4)).unwrap().record().url, "https://h/f?X-Amz-Signature=REDACTED");
    }

    #[test]
    fn a_panic_under_a_storage_lock_does_not_fail_later_requests() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let t = s.open_task(&id(5), &redact_url_str("http://h/f"), shape(Some(8), 4)).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _tasks = s.tasks.lock().unwrap();
            panic!("a request panicked while it held the storage lock");
        }));
        assert!(panicked.is_err() && s.tasks.is_poisoned());
        t.panic_under_its_locks_for_test();
        // Every later request still works (with `.lock().expect()`, each would panic).
        t.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
        assert_eq!(s.get(&id(5)).unwrap().missing_pieces(), vec![1]);
        assert_eq!(s.list().len(), 1);
        drop(t);
        s.remove(&id(5), false).unwrap();
        assert!(s.lease(&id(5)).is_none());
    }

    #[test]
    fn partial_pieces_whose_bytes_changed_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let t = s.open_task(&id(3), &redact_url_str("http://h/f"), shape(Some(8), 4)).unwrap();
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
