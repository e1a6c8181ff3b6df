//! One running download, shared by every request for its task. Joining and
//! leaving go through one lock per job, so a request never joins a job that
//! its last watcher has just abandoned.

use std::sync::{Arc, Mutex};

use darter_common::sync::MutexExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::progress::{Progress, Status};

#[derive(Debug, Default)]
struct Watchers {
    count: usize,
    abandoned: bool,
}

/// A running download.
#[derive(Debug)]
pub(super) struct Job {
    /// Its progress.
    pub progress: Progress,
    /// Cancelled when abandoned or at shutdown.
    pub cancel: CancellationToken,
    watchers: Mutex<Watchers>,
}

impl Job {
    /// A job with its first watcher.
    pub fn start(cancel: CancellationToken) -> (Arc<Job>, Subscription) {
        let job = Arc::new(Job { progress: Progress::new(), cancel, watchers: Mutex::new(Watchers::default()) });
        let sub = job.join().expect("a new job is open");
        (job, sub)
    }

    /// Joins the job, unless it has ended or been abandoned.
    pub fn join(self: &Arc<Self>) -> Option<Subscription> {
        let mut w = self.watchers.locked();
        if w.abandoned || self.progress.snapshot().outcome.is_some() {
            return None;
        }
        w.count += 1;
        Some(Subscription { job: self.clone(), status: self.progress.subscribe() })
    }

    /// Whether its last watcher left before it ended.
    pub fn abandoned(&self) -> bool {
        self.watchers.locked().abandoned
    }
}

/// A request's view of a download. Dropping it leaves the job; the last one
/// to leave before the job ends cancels it (verified pieces stay for a resume).
pub struct Subscription {
    job: Arc<Job>,
    /// Status updates.
    pub status: watch::Receiver<Status>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut w = self.job.watchers.locked();
        w.count -= 1;
        if w.count == 0 && self.job.progress.snapshot().outcome.is_none() {
            w.abandoned = true;
            self.job.cancel.cancel();
        }
    }
}
