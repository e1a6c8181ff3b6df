//! On-disk formats of a task: `task.json` (written atomically: temp file +
//! rename) and `pieces.log` (one line per verified piece, appended after its
//! bytes are written; a torn last line from a crash is ignored on load).

use std::io::Write as _;
use std::path::Path;

use darter_common::digest::Digest;
use serde::{Deserialize, Serialize};

/// Format version of `task.json`; bump with a migration when it changes.
pub const RECORD_VERSION: u32 = 1;

/// `task.json`: what is known about a task besides its pieces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Format version.
    pub version: u32,
    /// Task ID.
    pub id: String,
    /// URL the task was first fetched from, redacted
    /// (`darter_common::secret`: no user info, no signature or token in its
    /// query; caller headers are never stored).
    pub url: String,
    /// Content length; `None` while streaming from an origin that did not say.
    pub content_length: Option<u64>,
    /// Piece length.
    pub piece_length: u64,
    /// The origin's validator (ETag or Last-Modified) the bytes were fetched under.
    #[serde(default)]
    pub validator: Option<String>,
    /// Whole-content digest, set when the content was verified against it.
    pub digest: Option<String>,
    /// Every piece present (and the whole digest verified when known).
    pub complete: bool,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last access, Unix seconds (persisted lazily; drives TTL GC).
    pub accessed_at: u64,
}

/// Writes `record` to `path` atomically, as a file only the daemon's user reads.
pub fn write_record(path: &Path, record: &TaskRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = crate::private_fs::create_new(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads `task.json`.
pub fn read_record(path: &Path) -> std::io::Result<TaskRecord> {
    let bytes = std::fs::read(path)?;
    let record: TaskRecord =
        serde_json::from_slice(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if record.version != RECORD_VERSION {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unsupported task record version {}", record.version),
        ));
    }
    Ok(record)
}

/// One line of `pieces.log`.
pub fn piece_line(number: u32, length: u64, digest: &Digest) -> String {
    format!("{number} {length} {digest}\n")
}

/// Parses `pieces.log`: `(number, length, digest)` per complete, well-formed line.
pub fn parse_piece_log(text: &str) -> Vec<(u32, u64, Digest)> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            break;
        };
        let mut parts = line.split(' ');
        let parsed = (|| {
            let n = parts.next()?.parse().ok()?;
            let len = parts.next()?.parse().ok()?;
            let d = parts.next()?.parse().ok()?;
            parts.next().is_none().then_some((n, len, d))
        })();
        match parsed {
            Some(p) => out.push(p),
            None => tracing::warn!(line, "ignoring malformed pieces.log line"),
        }
    }
    out
}

/// Now as Unix nanoseconds (a seed for unique names).
pub fn unix_now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Now as Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_log_round_trips_and_ignores_a_torn_tail() {
        let d = Digest::of(b"x");
        let mut text = piece_line(0, 4, &d) + &piece_line(7, 2, &d);
        text.push_str("8 4 sha256:ab");
        assert_eq!(parse_piece_log(&text), vec![(0, 4, d), (7, 2, d)]);
        assert_eq!(parse_piece_log("garbage\n1 1 x\n"), vec![]);
    }

    #[test]
    fn v1_record_fixture_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("task.json");
        std::fs::write(
            &p,
            r#"{"version":1,"id":"0000000000000000000000000000000000000000000000000000000000000000","url":"http://h/f","content_length":10,"piece_length":262144,"digest":null,"complete":false,"created_at":1,"accessed_at":2}"#,
        )
        .unwrap();
        let r = read_record(&p).unwrap();
        assert_eq!((r.content_length, r.complete), (Some(10), false));
        write_record(&p, &r).unwrap();
        assert_eq!(read_record(&p).unwrap(), r);
    }
}
