//! Idle timeouts (`proxy.idle_timeout`), so that a client or an upstream that
//! stalls does not hold a connection, a tunnel or an upstream request forever:
//! - [`WriteDeadline`] on every client connection: a write the client takes
//!   nothing of for the timeout fails, and the connection is closed;
//! - [`IdleBody`] on request bodies relayed upstream: a client that sends no
//!   byte of its body for the timeout fails the relay;
//! - [`Activity`] on `CONNECT` tunnels: no byte moved either way for the
//!   timeout closes both ends;
//! - an upstream that sends nothing for the timeout (answer head or body) is
//!   cut by the relay client's read timeout.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::BoxError;

/// A deadline armed when an operation first stays pending, cleared when it
/// makes progress.
#[derive(Debug)]
struct Deadline {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    fn new(timeout: Duration) -> Self {
        Self { timeout, sleep: None }
    }

    fn progressed(&mut self) {
        self.sleep = None;
    }

    /// Called when the operation is pending: ready once it has been for the timeout.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let timeout = self.timeout;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A connection whose writes (and flushes) fail with `TimedOut` once the peer
/// has taken nothing for the timeout. Reads pass through untouched.
#[derive(Debug)]
pub struct WriteDeadline<T> {
    io: T,
    deadline: Deadline,
}

impl<T> WriteDeadline<T> {
    /// Wraps `io`.
    pub fn new(io: T, timeout: Duration) -> Self {
        Self { io, deadline: Deadline::new(timeout) }
    }

    fn after<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.deadline.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.deadline.poll_expired(cx).map(|()| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer took nothing for {:?} (proxy.idle_timeout)", self.deadline.timeout),
                ))
            }),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.after(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.after(cx, polled)
    }
}

/// A request body that fails once the client has sent nothing of it for the timeout.
#[derive(Debug)]
pub struct IdleBody<B> {
    body: B,
    deadline: Deadline,
}

impl<B> IdleBody<B> {
    /// Wraps `body`.
    pub fn new(body: B, timeout: Duration) -> Self {
        Self { body, deadline: Deadline::new(timeout) }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline.progressed();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => this.deadline.poll_expired(cx).map(|()| {
                let timeout = this.deadline.timeout;
                Some(Err(
                    format!("the client sent nothing of its request body for {timeout:?} (proxy.idle_timeout)").into()
                ))
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// When bytes last moved through a tunnel, either way.
#[derive(Debug, Clone)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { start: Instant::now(), last: Arc::new(AtomicU64::new(0)) }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// Returns once no byte has moved for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// `io`, counting its reads and writes as activity.
    pub fn track<T>(&self, io: T) -> Tracked<T> {
        Tracked { io, activity: self.clone() }
    }
}

/// An I/O stream whose progress counts as [`Activity`].
#[derive(Debug)]
pub struct Tracked<T> {
    io: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_timeout() {
        let (a, _b) = tokio::io::duplex(16);
        let mut a = WriteDeadline::new(a, Duration::from_secs(5));
        a.write_all(&[0; 16]).await.unwrap();
        let started = Instant::now();
        let err = a.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_is_not_cut() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut a = WriteDeadline::new(a, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 16];
            let mut total = 0;
            while total < 160 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                total += b.read(&mut buf).await.unwrap();
            }
        });
        a.write_all(&[0; 160]).await.unwrap();
        reader.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_is_idle_only_when_nothing_moves_either_way() {
        let activity = Activity::default();
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = activity.track(a);
        let started = Instant::now();
        let traffic = async {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                a.write_all(b"x").await.unwrap();
                b.read_exact(&mut [0]).await.unwrap();
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = activity.idle_for(Duration::from_secs(5)) => {}
            () = traffic => unreachable!(),
        }
        assert_eq!(started.elapsed(), Duration::from_secs(14), "last byte at 9 s, idle 5 s");
    }
}
