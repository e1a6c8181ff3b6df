//! Downloads: one shared job per task, however many requests ask for it.
//!
//! [`Downloads::download`] answers at once from local storage when the task
//! is complete; otherwise it joins the running job for the task or starts one.
//! A job runs until it ends or until every request that joined it has gone
//! (then it is cancelled, and its verified pieces stay for a resume).

mod announcer;
mod back_to_source;
mod job;
mod output;
mod p2p;
pub mod piece_bits;
mod piece_buf;
mod piece_map;
mod progress;
mod scheduled;
mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use darter_common::digest::{Digest, Hasher};
use darter_common::limits::RequestLimits;
use darter_common::sync::MutexExt as _;
use darter_common::task_id::TaskId;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use back_to_source::NewPiece;
use back_to_source::{BackToSource, join_err};
use job::Job;
pub use job::Subscription;
pub use output::{Caller, place_output};
use progress::Progress;
pub use progress::{Finished, Sources, Started, Status};
pub use scheduled::Scheduled;
use scheduled::ScheduledFetch;
pub use spec::DownloadSpec;

use crate::backend::{Backend, Backends};
use crate::config::BackToSourceConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::storage::{Lease, Storage, TaskEntry};

/// Runs and shares downloads.
pub struct Downloads {
    storage: Arc<Storage>,
    backends: Backends,
    config: BackToSourceConfig,
    metrics: Arc<Metrics>,
    jobs: Mutex<HashMap<TaskId, Arc<Job>>>,
    shutdown: CancellationToken,
    scheduled: Option<Scheduled>,
    limits: RequestLimits,
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads").finish_non_exhaustive()
    }
}

impl Downloads {
    /// A manager over `storage`.
    pub fn new(
        storage: Arc<Storage>,
        config: BackToSourceConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        Ok(Self {
            storage,
            backends: Backends::new(&config)?,
            config,
            metrics,
            jobs: Mutex::new(HashMap::new()),
            shutdown,
            scheduled: None,
            limits: RequestLimits::default(),
        })
    }

    /// Refuses downloads whose URL or headers pass `limits` (`download.max_*`).
    pub fn with_limits(mut self, limits: RequestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The size limits every download request is held to.
    pub fn limits(&self) -> &RequestLimits {
        &self.limits
    }

    /// Downloads through the swarm the schedulers plan.
    pub fn with_scheduler(mut self, scheduled: Scheduled) -> Self {
        self.scheduled = Some(scheduled);
        self
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Starts or joins the download of `spec`.
    pub fn download(self: &Arc<Self>, spec: DownloadSpec) -> Result<Subscription> {
        self.download_through(spec, None)
    }

    /// Starts or joins the download of `spec`; a download this starts
    /// fetches from the origin through `backend` when given (the proxy's,
    /// which reaches only the destinations it allows), else through the
    /// backend for the URL's scheme. A running download is joined as it is.
    pub fn download_through(
        self: &Arc<Self>,
        spec: DownloadSpec,
        backend: Option<Arc<dyn Backend>>,
    ) -> Result<Subscription> {
        if self.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        spec.check_limits(&self.limits)?;
        let backend = match backend {
            Some(b) => b,
            None => self.backends.for_url(&spec.url)?,
        };
        let mut jobs = self.jobs.locked();
        if let Some(sub) = jobs.get(&spec.task_id).and_then(|job| job.join()) {
            return Ok(sub);
        }
        let (job, sub) = Job::start(self.shutdown.child_token());
        jobs.insert(spec.task_id.clone(), job.clone());
        drop(jobs);
        let this = self.clone();
        let fetcher =
            BackToSource { backend, storage: self.storage.clone(), config: self.config.clone(), reporter: None };
        let span = tracing::info_span!("download", task_id = %spec.task_id, url = %crate::backend::redacted(&spec.url));
        tokio::spawn(
            async move {
            let timer = std::time::Instant::now();
            let outcome = tokio::select! {
                r = this.run(&fetcher, &spec, &job.progress) => r,
                _ = job.cancel.cancelled() => Err(if job.abandoned() { Error::Abandoned } else { Error::ShuttingDown }),
            };
            this.metrics.download_finished(&outcome, timer.elapsed());
            match &outcome {
                Ok(f) => {
                    tracing::info!(task_id = %spec.task_id, bytes = f.content_length, origin_bytes = f.sources.origin_bytes, elapsed = ?timer.elapsed(), "download finished")
                }
                Err(e) => tracing::warn!(task_id = %spec.task_id, error = %e, "download failed"),
            }
            job.progress.finish(outcome);
            let idle = {
                let mut jobs = this.jobs.locked();
                if jobs.get(&spec.task_id).is_some_and(|j| Arc::ptr_eq(j, &job)) {
                    jobs.remove(&spec.task_id);
                }
                jobs.is_empty()
            };
            if idle {
                // The last download is over: give its buffers back to the system.
                if let Some(scheduled) = &this.scheduled {
                    scheduled.pieces.release_buffers();
                }
                tokio::task::spawn_blocking(crate::memory::release_free_memory);
            }
        }
            .instrument(span),
        );
        Ok(sub)
    }

    async fn run(&self, fetcher: &BackToSource, spec: &DownloadSpec, progress: &Progress) -> Result<Finished> {
        if let Some(lease) = self.storage.lease(&spec.task_id).filter(|t| t.is_complete()) {
            if let Some(scheduled) = self.scheduled.as_ref().filter(|s| s.seed) {
                self.announce_complete(scheduled, spec, &lease).await;
            }
            progress.started(&lease);
            let len = lease.content_length().unwrap_or(0);
            self.metrics.bytes_local(len);
            let digest = lease.record().digest.and_then(|d| d.parse().ok());
            let sources = Sources { local_bytes: len, ..Default::default() };
            return Ok(Finished { entry: lease, content_length: len, digest, sources });
        }
        let fetched = match &self.scheduled {
            Some(scheduled) => self.fetch_scheduled(scheduled, fetcher, spec, progress).await,
            None if spec.disable_back_to_source => {
                ScheduledFetch { result: Err(Error::BackToSourceDisabled), announcer: None }
            }
            None => ScheduledFetch { result: fetcher.fetch(spec, progress).await.map(|l| (l, true)), announcer: None },
        };
        let verified = match fetched.result {
            Ok((lease, from_origin)) => self.verify_whole(&lease, spec.digest).await.map(|d| (lease, from_origin, d)),
            Err(e) => Err(e),
        };
        if let Some(announcer) = fetched.announcer {
            let outcome = verified.as_ref().map(|(l, o, d)| (l, *o, *d));
            scheduled::report_end(announcer, outcome).await;
        }
        let (lease, _, digest) = match verified {
            Ok(v) => v,
            Err(e @ (Error::NoSpace(_) | Error::LimitExceeded(_))) => {
                // The task cannot finish here; do not leave the disk full of
                // it, nor half of a content that is over the limit.
                let (storage, id) = (self.storage.clone(), spec.task_id.clone());
                let _ = tokio::task::spawn_blocking(move || storage.remove(&id, true)).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let status = progress.snapshot();
        let len = lease.content_length().unwrap_or(0);
        self.metrics.bytes_origin(status.origin_bytes);
        let local = status.started.as_ref().map_or(0, |s| s.local_bytes);
        self.metrics.bytes_local(local);
        let sources = Sources { origin_bytes: status.origin_bytes, peer_bytes: status.peer_bytes, local_bytes: local };
        Ok(Finished { entry: lease, content_length: len, digest, sources })
    }

    /// Checks the whole content against the expected digest (when there is
    /// one) and marks the task complete; a mismatch deletes the task.
    async fn verify_whole(&self, lease: &Lease, expected: Option<Digest>) -> Result<Option<Digest>> {
        let e = lease.clone();
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(expected) = expected {
                let actual = hash_content(&e)?;
                if actual != expected {
                    tracing::warn!(task_id = %e.id(), %expected, %actual, "content does not match its digest; deleting the task");
                    let _ = storage.remove(e.id(), true);
                    return Err(Error::DigestMismatch { expected, actual });
                }
            }
            e.mark_complete(expected)?;
            // Flushing a large file takes a while; nobody needs to wait for it,
            // and it does not hold the task in use (no lease).
            let e: Arc<TaskEntry> = Arc::clone(&e);
            std::thread::spawn(move || {
                if let Err(err) = e.persist_complete() {
                    tracing::warn!(task_id = %e.id(), error = %err, "cannot persist a complete task; it will be re-verified after a restart");
                }
            });
            Ok(expected)
        })
        .await
        .map_err(join_err)?
    }
}

fn hash_content(entry: &TaskEntry) -> Result<Digest> {
    let len = entry.content_length().unwrap_or(0);
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut offset = 0;
    while offset < len {
        let n = buf.len().min((len - offset) as usize);
        entry.read_at(&mut buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hasher.finish())
}
