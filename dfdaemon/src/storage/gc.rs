//! Garbage collection: tasks idle past their TTL go first; then, while
//! Darter's own bytes exceed the high watermark of its capacity, the least
//! recently used tasks go until usage is under the low watermark. Tasks in
//! use (downloading, uploading) are never collected.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Storage;
use super::record::unix_now;

/// What GC keeps.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// How often to run.
    pub interval: Duration,
    /// Idle tasks older than this go.
    pub task_ttl: Duration,
    /// Bytes Darter may use.
    pub capacity: u64,
    /// Start evicting above `high * capacity`...
    pub high_watermark: f64,
    /// ... down to `low * capacity`.
    pub low_watermark: f64,
}

impl Storage {
    /// One GC pass; returns the IDs removed. Blocking.
    pub fn collect_garbage(&self, policy: &GcPolicy) -> Vec<String> {
        let now = unix_now();
        let mut removed = Vec::new();
        let mut tasks = self.list();
        for t in &tasks {
            let _ = t.persist_access();
            if !t.in_use()
                && now.saturating_sub(t.accessed_at()) > policy.task_ttl.as_secs()
                && self.remove(t.id(), false).is_ok()
            {
                tracing::info!(task_id = %t.id(), "gc: removed task past its ttl");
                removed.push(t.id().to_string());
            }
        }
        tasks.retain(|t| !removed.contains(&t.id().to_string()));
        let mut used: u64 = tasks.iter().map(|t| t.disk_bytes()).sum();
        let high = (policy.capacity as f64 * policy.high_watermark) as u64;
        let low = (policy.capacity as f64 * policy.low_watermark) as u64;
        if used > high {
            tasks.sort_by_key(|t| t.accessed_at());
            for t in tasks {
                if used <= low {
                    break;
                }
                let bytes = t.disk_bytes();
                if !t.in_use() && self.remove(t.id(), false).is_ok() {
                    tracing::info!(task_id = %t.id(), bytes, used, high, "gc: evicted task over the high watermark");
                    used -= bytes;
                    removed.push(t.id().to_string());
                }
            }
        }
        removed
    }
}

/// Runs GC every `policy.interval` until cancelled.
pub async fn run_gc_loop(storage: Arc<Storage>, policy: GcPolicy, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(policy.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (s, p) = (storage.clone(), policy.clone());
        let _ = tokio::task::spawn_blocking(move || s.collect_garbage(&p)).await;
    }
}

#[cfg(test)]
mod tests {
    use darter_common::digest::Digest;
    use darter_common::task_id::TaskId;

    use super::*;
    use crate::storage::Shape;

    fn policy(capacity: u64) -> GcPolicy {
        GcPolicy {
            interval: Duration::from_secs(1),
            task_ttl: Duration::from_secs(3600),
            capacity,
            high_watermark: 0.9,
            low_watermark: 0.5,
        }
    }

    #[test]
    fn evicts_least_recently_used_over_the_watermark_but_never_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let mut leases = Vec::new();
        for n in 1..=4u8 {
            let id = TaskId::parse(&format!("{n:02x}").repeat(32)).unwrap();
            let t = s
                .open_task(
                    &id,
                    &darter_common::secret::redact_url_str("http://h/f"),
                    Shape { content_length: Some(4), piece_length: 4, validator: None },
                )
                .unwrap();
            t.write_piece(0, 0, &[b"abcd"], Digest::of(b"abcd")).unwrap();
            if n == 1 {
                leases.push(t);
            }
        }
        // 16 bytes used, capacity 16: over 0.9 -> evict down to 8, skipping the leased task 1.
        let removed = s.collect_garbage(&policy(16));
        assert_eq!(removed.len(), 2);
        assert!(s.get(&TaskId::parse(&"01".repeat(32)).unwrap()).is_some());
        assert_eq!(s.used_bytes(), 8);
        assert!(s.collect_garbage(&policy(16)).is_empty(), "under the watermark nothing goes");
    }

    #[test]
    fn ttl_removes_idle_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let id = TaskId::parse(&"0a".repeat(32)).unwrap();
        s.open_task(
            &id,
            &darter_common::secret::redact_url_str("http://h/f"),
            Shape { content_length: Some(4), piece_length: 4, validator: None },
        )
        .unwrap();
        let mut p = policy(u64::MAX);
        assert!(s.collect_garbage(&p).is_empty());
        p.task_ttl = Duration::ZERO;
        // accessed_at has second resolution: only strictly older tasks go.
        s.get(&id).unwrap().touch();
        let t = s.get(&id).unwrap();
        t.accessed_at_for_test(unix_now() - 5);
        drop(t);
        assert_eq!(s.collect_garbage(&p).len(), 1);
    }
}
