//! The `ListSchedulers` answer cache, and its invalidation across replicas.
//!
//! Answers are cached per set of peer facts under a *generation*: every change
//! that can alter an answer (a cluster written, a member registered, gone
//! inactive or back) bumps the generation, and answers of older generations
//! are never served again (they expire by TTL). A lookup reports the
//! generation it saw; the answer computed after a miss is stored under that
//! generation, so an answer computed while a change lands is never served
//! after the change.
//!
//! - Without Redis ([`AnswerCache::local`]) the generation is a counter in this
//!   process and answers live in a bounded map: right for one replica.
//! - With Redis ([`AnswerCache::redis`]) the generation is a Redis counter and
//!   answers are Redis keys with a TTL, shared by every replica: a change
//!   made through one replica is seen by the next request on any other.
//!   When Redis fails, lookups miss and the database answers (slower, still
//!   right); the failure is logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use sha2::{Digest as _, Sha256};

use crate::clock::Clock;
use crate::matching::PeerFacts;

/// Most answers the in-process cache holds before it starts over.
const LOCAL_CAPACITY: usize = 65_536;
/// How long one Redis command may take before the cache gives up on it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// What a lookup found.
#[derive(Debug)]
pub struct Lookup {
    /// The cached answer (encoded), if any.
    pub hit: Option<Vec<u8>>,
    /// The generation to store a freshly computed answer under; `None` when
    /// the cache cannot be used (Redis down).
    pub generation: Option<u64>,
}

/// Cached `ListSchedulers` answers; cheap to share behind an `Arc`.
pub struct AnswerCache {
    ttl: Duration,
    /// Ages in-process answers; Redis ages its keys by its own clock.
    clock: Clock,
    /// Prefix of every Redis key (`<namespace>:manager:cache:...`), so
    /// several Darter deployments can share one Redis.
    namespace: String,
    backend: Backend,
}

/// An in-process cached answer: its generation, when it was stored, the bytes.
type LocalAnswer = (u64, Instant, Vec<u8>);

enum Backend {
    Local { generation: AtomicU64, answers: Mutex<HashMap<String, LocalAnswer>> },
    Redis { conn: redis::aio::ConnectionManager },
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Local { .. } => "local",
            Backend::Redis { .. } => "redis",
        };
        f.debug_struct("AnswerCache").field("backend", &kind).field("ttl", &self.ttl).finish()
    }
}

impl AnswerCache {
    /// An in-process cache (one replica); answers age on `clock`.
    pub fn local(ttl: Duration, clock: Clock) -> Self {
        Self {
            ttl,
            clock,
            namespace: String::new(),
            backend: Backend::Local { generation: AtomicU64::new(0), answers: Mutex::new(HashMap::new()) },
        }
    }

    /// A cache shared through the Redis at `url`. Fails when the URL is bad or
    /// Redis does not answer at start (the manager then refuses to start:
    /// replicas that think they share a cache but do not would disagree).
    pub async fn redis(url: &str, namespace: &str, ttl: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("cache.redis_url: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| anyhow::anyhow!("cache.redis_url: Redis did not answer within 5s"))?
            .map_err(|e| anyhow::anyhow!("cache.redis_url: cannot connect to Redis: {e}"))?;
        Ok(Self { ttl, clock: Clock::system(), namespace: namespace.to_owned(), backend: Backend::Redis { conn } })
    }

    /// Redis key of the shared generation counter.
    fn generation_key(&self) -> String {
        format!("{}:manager:cache:generation", self.namespace)
    }

    /// Redis key of one cached answer.
    fn answer_key(&self, generation: u64, facts: &str) -> String {
        format!("{}:manager:cache:answer:{generation}:{facts}", self.namespace)
    }

    /// Whether answers are shared through Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis { .. })
    }

    /// Looks up the answer for `peer` in the current generation.
    pub async fn lookup(&self, peer: &PeerFacts) -> Lookup {
        let key = facts_key(peer);
        match &self.backend {
            Backend::Local { generation, answers } => {
                let generation = generation.load(Ordering::Acquire);
                let answers = answers.lock().unwrap_or_else(|e| e.into_inner());
                let hit = answers
                    .get(&key)
                    .filter(|(g, at, _)| *g == generation && self.clock.instant().duration_since(*at) < self.ttl)
                    .map(|(_, _, answer)| answer.clone());
                Lookup { hit, generation: Some(generation) }
            }
            Backend::Redis { conn } => {
                let mut conn = conn.clone();
                let generation = match conn.get::<_, Option<u64>>(self.generation_key()).await {
                    Ok(g) => g.unwrap_or(0),
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis cache unavailable; answering from the database");
                        return Lookup { hit: None, generation: None };
                    }
                };
                let hit: Option<Vec<u8>> = match conn.get(self.answer_key(generation, &key)).await {
                    Ok(hit) => hit,
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis cache unavailable; answering from the database");
                        None
                    }
                };
                Lookup { hit, generation: Some(generation) }
            }
        }
    }

    /// Stores `answer` for `peer` under the generation a [`AnswerCache::lookup`] saw.
    pub async fn store(&self, peer: &PeerFacts, generation: u64, answer: Vec<u8>) {
        let key = facts_key(peer);
        match &self.backend {
            Backend::Local { answers, .. } => {
                let mut answers = answers.lock().unwrap_or_else(|e| e.into_inner());
                if answers.len() >= LOCAL_CAPACITY && !answers.contains_key(&key) {
                    answers.clear();
                }
                answers.insert(key, (generation, self.clock.instant(), answer));
            }
            Backend::Redis { conn } => {
                let mut conn = conn.clone();
                let ttl = self.ttl.as_secs().max(1);
                let stored: redis::RedisResult<()> = conn.set_ex(self.answer_key(generation, &key), answer, ttl).await;
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "cannot store an answer in the Redis cache");
                }
            }
        }
    }

    /// Makes every cached answer stale, on every replica sharing the cache.
    /// `why` is logged at debug level.
    pub async fn invalidate(&self, why: &str) {
        tracing::debug!(why, "ListSchedulers cache invalidated");
        match &self.backend {
            Backend::Local { generation, answers } => {
                generation.fetch_add(1, Ordering::AcqRel);
                answers.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
            Backend::Redis { conn } => {
                let mut conn = conn.clone();
                let bumped: redis::RedisResult<u64> = conn.incr(self.generation_key(), 1).await;
                if let Err(e) = bumped {
                    // Answers cached before the change may be served until their TTL.
                    tracing::warn!(error = %e, why, "cannot invalidate the Redis cache; cached answers expire by TTL");
                }
            }
        }
    }
}

/// A fixed-length key for a set of peer facts.
fn facts_key(peer: &PeerFacts) -> String {
    let mut h = Sha256::new();
    for part in [peer.hostname.as_str(), &peer.ip.to_string(), &peer.idc, &peer.location] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(peer.cluster_id.unwrap_or(0).to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn peer(ip: &str) -> PeerFacts {
        PeerFacts {
            hostname: "h".into(),
            ip: ip.parse().unwrap(),
            idc: String::new(),
            location: String::new(),
            cluster_id: None,
        }
    }

    #[tokio::test]
    async fn local_cache_serves_until_invalidated() {
        let cache = AnswerCache::local(Duration::from_secs(60), Clock::system());
        let a = peer("10.0.0.1");
        let miss = cache.lookup(&a).await;
        assert!(miss.hit.is_none());
        cache.store(&a, miss.generation.unwrap(), b"one".to_vec()).await;
        assert_eq!(cache.lookup(&a).await.hit.as_deref(), Some(&b"one"[..]));
        assert!(cache.lookup(&peer("10.0.0.2")).await.hit.is_none(), "other facts, other answer");

        // An answer computed before a change is not served after it.
        let before = cache.lookup(&a).await.generation.unwrap();
        cache.invalidate("test").await;
        cache.store(&a, before, b"stale".to_vec()).await;
        assert!(cache.lookup(&a).await.hit.is_none());
    }

    #[tokio::test]
    async fn local_cache_entries_expire() {
        let clock = ManualClock::new();
        let cache = AnswerCache::local(Duration::from_millis(20), clock.clock());
        let a = peer("10.0.0.1");
        cache.store(&a, 0, b"one".to_vec()).await;
        clock.advance(Duration::from_millis(19));
        assert_eq!(cache.lookup(&a).await.hit.as_deref(), Some(&b"one"[..]), "served until the TTL");
        clock.advance(Duration::from_millis(1));
        assert!(cache.lookup(&a).await.hit.is_none());
    }

    #[test]
    fn keys_separate_fields() {
        let mut a = peer("10.0.0.1");
        a.hostname = "ab".into();
        let mut b = peer("10.0.0.1");
        b.hostname = "a".into();
        b.idc = "b".into();
        assert_ne!(facts_key(&a), facts_key(&b));
    }
}
