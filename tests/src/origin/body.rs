//! Response bodies: a producer task that reads content in large chunks (and
//! paces, or cuts the body short, as the behaviour asks) feeding a body that
//! counts bytes as hyper takes them for the wire.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Frame size for content: large frames keep a local 1 GiB transfer well
/// above 1 GB/s.
const CHUNK: u64 = 256 << 10;

/// How many chunks the producer may read ahead of the socket.
const READ_AHEAD: usize = 4;

/// Before aborting a response mid-body, give hyper this long to flush what it
/// already took, so the client receives the bytes that were counted.
const RESET_GRACE: Duration = Duration::from_millis(20);

/// Where the bytes of a response come from.
#[derive(Clone)]
pub(crate) enum Source {
    Bytes(Bytes),
    File(Arc<File>),
}

impl Source {
    async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        match self {
            Source::Bytes(b) => Ok(b.slice(offset as usize..offset as usize + len)),
            Source::File(file) => {
                let file = Arc::clone(file);
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, offset)?;
                    Ok(Bytes::from(buf))
                })
                .await
                .map_err(io::Error::other)?
            }
        }
    }
}

/// What to send: `len` bytes of `source` from `start`, shaped as asked.
pub(crate) struct Plan {
    pub source: Source,
    pub start: u64,
    pub len: u64,
    /// Bytes per second, or unlimited.
    pub rate: Option<u64>,
    /// Abort the response after this many bytes (if fewer than `len`).
    pub reset_after: Option<u64>,
}

/// Byte counters a body adds to as hyper pulls its frames.
#[derive(Clone)]
pub(crate) struct Counters {
    pub path: Arc<AtomicU64>,
    pub total: Arc<AtomicU64>,
}

/// A response body: either a short uncounted message or counted content.
pub(crate) enum OriginBody {
    Message(Option<Bytes>),
    Content { rx: mpsc::Receiver<io::Result<Bytes>>, counters: Counters },
}

impl OriginBody {
    /// A short, uncounted body (error pages, redirects, HEAD).
    pub(crate) fn message(text: impl Into<Bytes>) -> Self {
        let text = text.into();
        Self::Message((!text.is_empty()).then_some(text))
    }

    /// Counted content produced by a background task following `plan`. The
    /// task stops as soon as the body is dropped (client gone, server shut
    /// down).
    pub(crate) fn content(plan: Plan, counters: Counters) -> Self {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::spawn(produce(plan, tx));
        Self::Content { rx, counters }
    }
}

async fn produce(plan: Plan, tx: mpsc::Sender<io::Result<Bytes>>) {
    let limit = plan.reset_after.map_or(plan.len, |r| r.min(plan.len));
    // A rate of 0 means unlimited; small chunks keep a paced body smooth.
    let rate = plan.rate.filter(|r| *r > 0);
    let chunk = rate.map_or(CHUNK, |rate| (rate / 20).clamp(1, CHUNK));
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < limit {
        let n = (limit - sent).min(chunk) as usize;
        let item = plan.source.read(plan.start + sent, n).await;
        // Pace so that by time t at most rate * t bytes have been released.
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64((sent + n as u64) as f64 / rate as f64);
            tokio::time::sleep_until(started + due).await;
        }
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
        sent += n as u64;
    }
    if limit < plan.len {
        tokio::time::sleep(RESET_GRACE).await;
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "origin: reset_after reached");
        let _ = tx.send(Err(reset)).await;
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            OriginBody::Message(text) => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
            OriginBody::Content { rx, counters } => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let n = data.len() as u64;
                    counters.path.fetch_add(n, Ordering::Relaxed);
                    counters.total.fetch_add(n, Ordering::Relaxed);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OriginBody::Message(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OriginBody::Message(text) => SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64)),
            // The handler sets Content-Length itself unless the behaviour asks
            // for chunked encoding, so the length stays unknown here.
            OriginBody::Content { .. } => SizeHint::default(),
        }
    }
}
