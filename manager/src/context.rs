//! What the gRPC service, the REST API and the background loops share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::AnswerCache;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{MemberKind, Store};

/// Shared state of one manager process.
#[derive(Debug)]
pub struct Context {
    pub store: Store,
    /// `ListSchedulers` answers; invalidated by every change that alters one.
    pub cache: Arc<AnswerCache>,
    pub metrics: Metrics,
    /// What time it is (see [`crate::clock`]).
    pub clock: Clock,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Per member, the generation of its newest keepalive stream in this
    /// process: a stream that closes marks the member inactive only if no
    /// newer stream took over (a restarted member reconnecting before the
    /// old connection's reset arrives).
    streams: Mutex<HashMap<(MemberKind, i64), u64>>,
    next_stream: std::sync::atomic::AtomicU64,
}

impl Context {
    /// A context over `store`.
    pub fn new(
        store: Store,
        cache: Arc<AnswerCache>,
        metrics: Metrics,
        clock: Clock,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            store,
            cache,
            metrics,
            clock,
            shutdown,
            tracker,
            streams: Mutex::new(HashMap::new()),
            next_stream: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Makes cached `ListSchedulers` answers stale on every replica; `cause`
    /// labels the metric and the debug log.
    pub async fn invalidate(&self, cause: &'static str) {
        self.metrics.invalidated(cause);
        self.cache.invalidate(cause).await;
    }

    pub(crate) fn claim_stream(&self, key: (MemberKind, i64)) -> u64 {
        let generation = self.next_stream.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(key, generation);
        generation
    }

    /// Whether the stream `generation` was the newest for `key` (and forgets it).
    pub(crate) fn release_stream(&self, key: (MemberKind, i64), generation: u64) -> bool {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.get(&key) == Some(&generation) {
            streams.remove(&key);
            true
        } else {
            false
        }
    }
}
