//! Password hashing and checking (argon2id) on a few threads of their own,
//! behind a bounded queue.
//!
//! One argon2 hash with the default parameters works through 19 MiB of
//! memory for tens of milliseconds of one core. On tokio's blocking pool, 64
//! sign-ins at once ran 64 hashes at once and the process grew by more than a
//! gigabyte, and stayed there: glibc keeps freed blocks that large in its
//! arenas once its dynamic mmap threshold has risen (measured: 10 hashes one
//! after another on two threads still kept +150 MiB). Here:
//!
//! - `auth.password_checks` threads do every hash, each in a memory area of
//!   its own, allocated at its first hash and reused for every later one
//!   (argon2's `hash_password_into_with_memory`), so the memory argon2 takes
//!   is at most that many areas, whatever the allocator does;
//! - `auth.password_check_queue` more checks may wait; a check beyond those is
//!   refused at once ([`Error::TooManyRequests`], a 429 with `Retry-After`),
//!   never queued without bound; a queued check whose caller has gone (a
//!   client that hung up) is skipped.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::Error;

/// Longest password accepted (argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// What a caller refused for a full queue is told to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Largest memory area a stored hash may ask for (in 1 KiB blocks: 256 MiB).
const MAX_BLOCKS: usize = 256 * 1024;

/// One unit of work for a hashing thread, given its memory area.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A hashing thread's argon2 memory, kept from one hash to the next.
#[derive(Default)]
struct Memory(Vec<Block>);

impl Memory {
    /// The first `blocks` blocks, growing the area (once) if it is smaller.
    fn blocks(&mut self, blocks: usize) -> Result<&mut [Block], Error> {
        if blocks > MAX_BLOCKS {
            return Err(Error::Internal(format!("a password hash asks for {blocks} KiB of memory")));
        }
        if self.0.len() < blocks {
            self.0 = vec![Block::default(); blocks];
        }
        Ok(&mut self.0[..blocks])
    }
}

/// The hashing threads and their queue; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Passwords {
    jobs: mpsc::Sender<Job>,
    /// One permit per running or waiting check.
    admission: Arc<Semaphore>,
}

impl Passwords {
    /// Starts `threads` hashing threads that take up to `threads + queue`
    /// checks at a time. The threads end when this is dropped.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                let mut memory = Memory::default();
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    job(&mut memory);
                }
            })?;
        }
        Ok(Self { jobs: tx, admission: Arc::new(Semaphore::new(threads.max(1) + queue)) })
    }

    /// An argon2id PHC string for `password` (argon2's default parameters).
    pub async fn hash(&self, password: &str) -> Result<String, Error> {
        let password = password.to_owned();
        self.run(move |memory| hash_with(memory, password.as_bytes())).await?
    }

    /// Whether `password` matches the PHC string `hash`; `None` checks it
    /// against a fixed hash, so an unknown user costs what a known one does.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, Error> {
        if password.len() > MAX_PASSWORD_LEN {
            return Ok(false);
        }
        let (password, hash) = (password.to_owned(), hash.map(str::to_owned));
        self.run(move |memory| {
            let hash = match hash {
                Some(h) => h,
                None => dummy_hash(memory)?,
            };
            verify_with(memory, password.as_bytes(), &hash)
        })
        .await?
    }

    /// Runs `f` on a hashing thread, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Memory) -> T + Send + 'static) -> Result<T, Error> {
        let permit = self.admission.clone().try_acquire_owned().map_err(|_| Error::TooManyRequests {
            message: "too many password checks at once; retry shortly".into(),
            retry_after: BUSY_RETRY_AFTER,
        })?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // Skipped when the caller has gone; the permit is given back
            // before the answer, so a caller's next check finds it free.
            let result = (!tx.is_closed()).then(|| f(memory));
            drop::<OwnedSemaphorePermit>(permit);
            if let Some(result) = result {
                let _ = tx.send(result);
            }
        });
        self.jobs.send(job).map_err(|_| Error::Internal("the password threads are gone".into()))?;
        rx.await.map_err(|_| Error::Internal("a password check failed".into()))
    }
}

/// argon2id with the default parameters and a random salt, as a PHC string.
fn hash_with(memory: &mut Memory, password: &[u8]) -> Result<String, Error> {
    let failed = |e: &dyn std::fmt::Display| Error::Internal(format!("cannot hash a password: {e}"));
    let params = Params::default();
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    rand::rng().fill(&mut salt[..]);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2
        .hash_password_into_with_memory(password, &salt, &mut out, memory.blocks(params.block_count())?)
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`, computed in `memory`.
fn verify_with(memory: &mut Memory, password: &[u8], hash: &str) -> Result<bool, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Internal(format!("stored password hash: {e}"));
    let parsed = PasswordHash::new(hash).map_err(|e| bad(&e))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(bad(&"no salt or no hash"));
    };
    let algorithm = Algorithm::new(parsed.algorithm.as_str()).map_err(|e| bad(&e))?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| bad(&e))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|e| bad(&e))?;
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    argon2
        .hash_password_into_with_memory(password, salt, &mut out, memory.blocks(params.block_count())?)
        .map_err(|e| bad(&e))?;
    // `Output` compares in constant time.
    Ok(Output::new(&out).map_err(|e| bad(&e))? == *expected)
}

/// A fixed hash checked when the name is unknown, so both cases cost the same.
fn dummy_hash(memory: &mut Memory) -> Result<String, Error> {
    static HASH: OnceLock<String> = OnceLock::new();
    if let Some(h) = HASH.get() {
        return Ok(h.clone());
    }
    let h = hash_with(memory, b"darter-no-such-user")?;
    Ok(HASH.get_or_init(|| h).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let p = Passwords::new(1, 0).unwrap();
        let hash = p.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(p.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!p.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!p.verify(&"x".repeat(MAX_PASSWORD_LEN + 1), Some(&hash)).await.unwrap());
        assert!(!p.verify("correct horse", None).await.unwrap());
    }

    #[test]
    fn hashes_agree_with_argon2s_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let mut memory = Memory::default();
        let ours = hash_with(&mut memory, b"correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok(), "{ours}");
        assert!(Argon2::default().verify_password(b"wrong horse", &parsed).is_err());
        let theirs = Argon2::default().hash_password(b"correct horse").unwrap().to_string();
        assert!(verify_with(&mut memory, b"correct horse", &theirs).unwrap());
        assert!(!verify_with(&mut memory, b"wrong horse", &theirs).unwrap());
        // Stronger parameters than the default grow the area once.
        let strong = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(32 * 1024, 3, 1, None).unwrap());
        let theirs = strong.hash_password(b"correct horse").unwrap().to_string();
        assert!(verify_with(&mut memory, b"correct horse", &theirs).unwrap());
        assert_eq!(memory.0.len(), 32 * 1024);
        assert!(verify_with(&mut memory, b"x", "not a hash").is_err());
    }

    #[tokio::test]
    async fn checks_beyond_the_threads_and_queue_are_refused_at_once() {
        let p = Arc::new(Passwords::new(1, 1).unwrap());
        // Hold the one thread until told to go.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let p = p.clone();
            async move { p.run(move |_| wait.recv().is_ok()).await }
        });
        let queued = tokio::spawn({
            let p = p.clone();
            async move { p.run(|_| 7).await }
        });
        testkit::eventually::eventually("both checks admitted", || {
            let free = p.admission.available_permits();
            async move { free == 0 }
        })
        .await;
        match p.verify("anything", None).await {
            Err(Error::TooManyRequests { retry_after, .. }) => assert_eq!(retry_after, BUSY_RETRY_AFTER),
            other => panic!("expected a refusal, got {other:?}"),
        }
        go.send(()).unwrap();
        assert!(running.await.unwrap().unwrap());
        assert_eq!(queued.await.unwrap().unwrap(), 7);
        assert_eq!(p.admission.available_permits(), 2, "every permit came back");
    }
}
