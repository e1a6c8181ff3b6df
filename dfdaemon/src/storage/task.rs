//! One task in local storage: its content file, its record and its verified
//! pieces. A piece is marked present only after its bytes are written and its
//! digest is known, so nothing unverified is ever served or reported.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use darter_common::digest::Digest;
use darter_common::piece::{MAX_PIECE_COUNT, MAX_PIECE_LENGTH, piece_count, piece_range};
use darter_common::sync::{MutexExt as _, RwLockExt as _};
use darter_common::task_id::TaskId;
use std::os::unix::fs::PermissionsExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::record::{self, TaskRecord};
use crate::error::{Error, Result};

/// File names inside a task directory.
pub(super) const RECORD_FILE: &str = "task.json";
pub(super) const PIECES_FILE: &str = "pieces.log";
pub(super) const CONTENT_FILE: &str = "content";

/// A verified piece held locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPiece {
    /// Piece number.
    pub number: u32,
    /// Offset in the content.
    pub offset: u64,
    /// Length.
    pub length: u64,
    /// sha256 of the bytes.
    pub digest: Digest,
}

#[derive(Debug)]
struct State {
    record: TaskRecord,
    pieces: BTreeMap<u32, StoredPiece>,
    /// Piece numbers in the order they were verified (each once), so
    /// followers can ask for what is new without rescanning every piece.
    added: Vec<u32>,
}

/// A task in storage. Shared by the downloader, the upload server and GC.
#[derive(Debug)]
pub struct TaskEntry {
    id: TaskId,
    dir: PathBuf,
    content: File,
    log: Mutex<File>,
    state: RwLock<State>,
    /// Bumped on every new piece and on completion; watchers re-read the state.
    changes: watch::Sender<u64>,
    /// Active users (downloads, uploads); GC skips tasks in use.
    leases: AtomicUsize,
    /// Cancelled when the task leaves storage (watchers of it stop).
    removed: CancellationToken,
    accessed_at: AtomicU64,
}

/// Keeps a task from being garbage-collected while held.
#[derive(Debug)]
pub struct Lease(Arc<TaskEntry>);

impl Clone for Lease {
    fn clone(&self) -> Self {
        self.0.leases.fetch_add(1, Ordering::AcqRel);
        Lease(self.0.clone())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.leases.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::ops::Deref for Lease {
    type Target = Arc<TaskEntry>;
    fn deref(&self) -> &Arc<TaskEntry> {
        &self.0
    }
}

fn io_err(context: &str, e: std::io::Error) -> Error {
    Error::storage(context, &e)
}

fn piece_on_disk_matches(content: &File, offset: u64, length: u64, digest: &Digest) -> bool {
    let mut buf = vec![0u8; length as usize];
    content.read_exact_at(&mut buf, offset).is_ok() && Digest::of(&buf) == *digest
}

impl TaskEntry {
    /// Creates a new, empty task directory (0700, its files 0600).
    pub(super) fn create(dir: PathBuf, record: TaskRecord) -> Result<Self> {
        crate::private_fs::create_dir_all(&dir).map_err(|e| io_err("create task dir", e))?;
        let content = crate::private_fs::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(CONTENT_FILE))
            .map_err(|e| io_err("create content", e))?;
        if let Some(len) = record.content_length {
            content.set_len(len).map_err(|e| io_err("size content", e))?;
        }
        let log = crate::private_fs::options()
            .append(true)
            .create(true)
            .truncate(false)
            .open(dir.join(PIECES_FILE))
            .map_err(|e| io_err("create pieces.log", e))?;
        log.set_len(0).map_err(|e| io_err("reset pieces.log", e))?;
        record::write_record(&dir.join(RECORD_FILE), &record).map_err(|e| io_err("write task.json", e))?;
        Ok(Self::assemble(dir, content, log, record, BTreeMap::new()))
    }

    /// Loads an existing task directory (after a restart). What an older
    /// version left readable by others is narrowed, and a URL it stored with
    /// a secret in it is stored redacted.
    pub(super) fn load(dir: PathBuf) -> std::io::Result<Self> {
        for path in [dir.clone(), dir.join(RECORD_FILE), dir.join(CONTENT_FILE), dir.join(PIECES_FILE)] {
            if let Err(e) = crate::private_fs::tighten(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot make a task file private to the daemon");
            }
        }
        let mut record = record::read_record(&dir.join(RECORD_FILE))?;
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        TaskId::parse(&record.id).map_err(|e| invalid(e.to_string()))?;
        let shown = darter_common::secret::redact_url_str(&record.url).into_string();
        if shown != record.url {
            record.url = shown;
            record::write_record(&dir.join(RECORD_FILE), &record)?;
        }
        // Bounds that keep a corrupt record from dividing by zero or asking for
        // absurd allocations (the minimum piece length is a policy for new tasks).
        let count = record.content_length.unwrap_or(0).checked_div(record.piece_length);
        if record.piece_length > MAX_PIECE_LENGTH || count.is_none_or(|c| c >= MAX_PIECE_COUNT as u64) {
            return Err(invalid(format!("piece length {} does not fit the content", record.piece_length)));
        }
        let content = File::options().read(true).write(true).open(dir.join(CONTENT_FILE))?;
        let log_text = std::fs::read_to_string(dir.join(PIECES_FILE)).unwrap_or_default();
        let mut pieces = BTreeMap::new();
        for (number, length, digest) in record::parse_piece_log(&log_text) {
            let (offset, expected_len) = match record.content_length {
                Some(len) if number < piece_count(len, record.piece_length) => {
                    piece_range(number, len, record.piece_length)
                }
                Some(_) => continue,
                None if length <= record.piece_length && number < MAX_PIECE_COUNT => {
                    (number as u64 * record.piece_length, length)
                }
                None => continue,
            };
            if expected_len != length {
                continue;
            }
            // Bytes of a task not recorded complete were never flushed: after a
            // power loss they may be gone, so each piece is checked again.
            if !record.complete && !piece_on_disk_matches(&content, offset, length, &digest) {
                tracing::warn!(task_id = %record.id, number, "dropping a stored piece that no longer matches its digest");
                continue;
            }
            pieces.insert(number, StoredPiece { number, offset, length, digest });
        }
        let log = File::options().append(true).open(dir.join(PIECES_FILE))?;
        Ok(Self::assemble(dir, content, log, record, pieces))
    }

    fn assemble(
        dir: PathBuf,
        content: File,
        log: File,
        record: TaskRecord,
        pieces: BTreeMap<u32, StoredPiece>,
    ) -> Self {
        let id = TaskId::parse(&record.id).expect("validated before assembling");
        let accessed = record.accessed_at;
        Self {
            id,
            dir,
            content,
            log: Mutex::new(log),
            state: RwLock::new(State { record, added: pieces.keys().copied().collect(), pieces }),
            changes: watch::channel(0).0,
            leases: AtomicUsize::new(0),
            accessed_at: AtomicU64::new(accessed),
            removed: CancellationToken::new(),
        }
    }

    /// Task ID.
    pub fn id(&self) -> &TaskId {
        &self.id
    }

    /// Takes a lease that keeps GC away. Prefer [`super::Storage::lease`],
    /// which also guarantees the task is still stored when the lease starts.
    pub fn lease(self: &Arc<Self>) -> Lease {
        self.leases.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Lease(self.clone())
    }

    pub(super) fn in_use(&self) -> bool {
        self.leases.load(Ordering::Acquire) > 0
    }

    /// Records an access now (drives TTL GC).
    pub fn touch(&self) {
        self.accessed_at.store(record::unix_now(), Ordering::Relaxed);
    }

    /// Last access, Unix seconds.
    pub fn accessed_at(&self) -> u64 {
        self.accessed_at.load(Ordering::Relaxed)
    }

    /// Path of the content file (for hard-linking a complete task to an output).
    pub fn content_path(&self) -> PathBuf {
        self.dir.join(CONTENT_FILE)
    }

    /// A copy of the record.
    pub fn record(&self) -> TaskRecord {
        let mut r = self.state.read_locked().record.clone();
        r.accessed_at = self.accessed_at();
        r
    }

    /// Content length, when known.
    pub fn content_length(&self) -> Option<u64> {
        self.state.read_locked().record.content_length
    }

    /// Piece length.
    pub fn piece_length(&self) -> u64 {
        self.state.read_locked().record.piece_length
    }

    /// Whether every piece is present and verified.
    pub fn is_complete(&self) -> bool {
        self.state.read_locked().record.complete
    }

    /// Verified pieces, in order.
    pub fn pieces(&self) -> Vec<StoredPiece> {
        self.state.read_locked().pieces.values().copied().collect()
    }

    /// The pieces verified after the first `cursor` ones (in the order they
    /// were verified), and the cursor to pass next time (0 at first).
    pub fn pieces_since(&self, cursor: usize) -> (Vec<StoredPiece>, usize) {
        let state = self.state.read_locked();
        let fresh =
            state.added[cursor.min(state.added.len())..].iter().filter_map(|n| state.pieces.get(n).copied()).collect();
        (fresh, state.added.len())
    }

    /// A verified piece.
    pub fn piece(&self, number: u32) -> Option<StoredPiece> {
        self.state.read_locked().pieces.get(&number).copied()
    }

    /// Whether piece `number` is present.
    pub fn has_piece(&self, number: u32) -> bool {
        self.state.read_locked().pieces.contains_key(&number)
    }

    /// Bytes of verified pieces.
    pub fn completed_bytes(&self) -> u64 {
        self.state.read_locked().pieces.values().map(|p| p.length).sum()
    }

    /// Numbers of pieces not yet present (requires a known length).
    pub fn missing_pieces(&self) -> Vec<u32> {
        let s = self.state.read_locked();
        let Some(len) = s.record.content_length else {
            return Vec::new();
        };
        (0..piece_count(len, s.record.piece_length)).filter(|n| !s.pieces.contains_key(n)).collect()
    }

    /// Subscribes to changes (new pieces, completion).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Writes a verified piece, given as the chunks it arrived in, at its
    /// offset, then records it. Blocking: call from `spawn_blocking`.
    pub fn write_piece<C: AsRef<[u8]>>(&self, number: u32, offset: u64, chunks: &[C], digest: Digest) -> Result<()> {
        let length: u64 = chunks.iter().map(|c| c.as_ref().len() as u64).sum();
        {
            let s = self.state.read_locked();
            if s.record.complete || s.pieces.contains_key(&number) {
                return Ok(());
            }
            if let Some(len) = s.record.content_length {
                let expected = piece_range(number, len, s.record.piece_length);
                if number >= piece_count(len, s.record.piece_length) || expected != (offset, length) {
                    return Err(Error::Storage(format!(
                        "piece {number} at {offset}+{length} does not fit task {}",
                        self.id
                    )));
                }
            }
        }
        {
            // One writer per file at a time: the kernel serialises buffered
            // writes to one inode anyway, and its lock spins where ours parks,
            // leaving the CPU to hashing and receiving.
            let mut log = self.log.locked();
            if self.removed.is_cancelled() {
                return Err(Error::Storage(format!("task {} was removed", self.id)));
            }
            let mut at = offset;
            for chunk in chunks {
                let chunk = chunk.as_ref();
                self.content.write_all_at(chunk, at).map_err(|e| io_err("write piece", e))?;
                at += chunk.len() as u64;
            }
            log.write_all(record::piece_line(number, length, &digest).as_bytes())
                .map_err(|e| io_err("append pieces.log", e))?;
        }
        let piece = StoredPiece { number, offset, length, digest };
        {
            let mut state = self.state.write_locked();
            if state.pieces.insert(number, piece).is_none() {
                state.added.push(number);
            }
        }
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Reads a verified piece. Blocking: call from `spawn_blocking`.
    pub fn read_piece(&self, number: u32) -> Result<(StoredPiece, Bytes)> {
        let piece = self.piece(number).ok_or_else(|| Error::TaskNotFound(format!("{} piece {number}", self.id)))?;
        let mut buf = vec![0u8; piece.length as usize];
        self.content.read_exact_at(&mut buf, piece.offset).map_err(|e| io_err("read piece", e))?;
        Ok((piece, Bytes::from(buf)))
    }

    /// The content file, for sending verified pieces straight from it
    /// (`sendfile`); only ranges of verified pieces may be read from it.
    pub fn content_file(&self) -> &File {
        &self.content
    }

    /// Reads `len` bytes at `offset` of the content. Blocking.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.content.read_exact_at(buf, offset).map_err(|e| io_err("read content", e))
    }

    /// Sets the length once a streamed origin ends. Blocking.
    pub fn set_content_length(&self, len: u64) -> Result<()> {
        let mut s = self.state.write_locked();
        s.record.content_length = Some(len);
        self.content.set_len(len).map_err(|e| io_err("size content", e))?;
        record::write_record(&self.dir.join(RECORD_FILE), &s.record).map_err(|e| io_err("write task.json", e))
    }

    /// Marks the task complete (every piece present and, when known, the
    /// whole digest verified): visible at once to readers, persisted by
    /// [`Self::persist_complete`], which the caller runs off the hot path.
    pub fn mark_complete(&self, digest: Option<Digest>) -> Result<()> {
        {
            let mut s = self.state.write_locked();
            let len = s.record.content_length.ok_or_else(|| Error::Storage("complete without a length".into()))?;
            if (s.pieces.len() as u32) != piece_count(len, s.record.piece_length) {
                return Err(Error::Storage(format!("task {} is missing pieces", self.id)));
            }
            s.record.complete = true;
            s.record.digest = digest.map(|d| d.to_string());
            // Complete content never changes again; read-only guards the hard
            // links handed out as outputs against writes in place. Only the
            // daemon's user reads it (outputs for other users are copies).
            let _ = std::fs::set_permissions(self.dir.join(CONTENT_FILE), std::fs::Permissions::from_mode(0o400));
        }
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Flushes the content to disk, then records the task as complete, so a
    /// record that says complete always has its bytes on disk (partial tasks
    /// are re-verified when loaded instead). Blocking.
    pub fn persist_complete(&self) -> Result<()> {
        self.content.sync_data().map_err(|e| io_err("sync content", e))?;
        if self.removed.is_cancelled() {
            return Ok(());
        }
        let mut r = self.state.read_locked().record.clone();
        r.accessed_at = self.accessed_at();
        record::write_record(&self.dir.join(RECORD_FILE), &r).map_err(|e| io_err("write task.json", e))
    }

    /// Persists the access time (called by GC, not per access).
    pub(super) fn persist_access(&self) -> std::io::Result<()> {
        let mut r = self.state.read_locked().record.clone();
        if r.accessed_at == self.accessed_at() {
            return Ok(());
        }
        r.accessed_at = self.accessed_at();
        record::write_record(&self.dir.join(RECORD_FILE), &r)
    }

    /// Cancelled once the task has left storage.
    pub fn removed(&self) -> CancellationToken {
        self.removed.clone()
    }

    /// Marks the task gone and deletes its directory (already out of the
    /// storage map). Blocking.
    pub(super) fn discard(&self) {
        {
            // Writers check `removed` under the log lock, so none writes
            // after this block. An incomplete task's bytes are nobody's
            // output (an output appears only once its task is whole), so they
            // are freed now, even while a piece write or upload still holds
            // the file open: a full disk frees at once. A complete task's
            // content may be a user's output (a hard link): only unlinked.
            let _log = self.log.locked();
            self.removed.cancel();
            if !self.state.read_locked().record.complete
                && let Err(e) = self.content.set_len(0)
            {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot free a removed task's content");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot delete task directory");
        }
    }

    /// Bytes this task occupies on disk (verified pieces; metadata is small).
    pub fn disk_bytes(&self) -> u64 {
        self.completed_bytes()
    }
}

#[cfg(test)]
impl TaskEntry {
    pub(crate) fn accessed_at_for_test(&self, t: u64) {
        self.accessed_at.store(t, Ordering::Relaxed);
    }

    /// Poisons the state and log locks the way a panicking request would.
    pub(crate) fn panic_under_its_locks_for_test(&self) {
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _state = self.state.write().unwrap();
            let _log = self.log.lock().unwrap();
            panic!("a request panicked while it held the task's locks");
        }));
        assert!(panicked.is_err() && self.state.is_poisoned() && self.log.is_poisoned());
    }
}
