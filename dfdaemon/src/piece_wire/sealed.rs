//! An encrypted piece connection after its handshake: TCP and the two
//! directions of the record layer ([`super::record`]).
//!
//! Besides the byte-stream interface (`AsyncRead`, `AsyncWrite`, for
//! request and response heads), it has the two bulk paths that make the
//! record layer worth having:
//! - [`Sealed::send_range`] (parent): a batch of records is laid out in
//!   one buffer, the file's bytes are read straight into the records'
//!   payloads with one `preadv`, each record is sealed where it lies, and
//!   the batch goes out in one write. No byte is copied in user space.
//! - [`Sealed::read_body`] (child): records are read into the piece's own
//!   buffer and each is decrypted down to where the plaintext before it
//!   ends, in the same pass ([`super::assembly`]); only the few bytes of a
//!   record cut by a read are ever moved. Like the plain path it sets the
//!   socket's receive low-water mark so that it is woken for large reads.
//!
//! Memory: about 33 KiB for received records per connection and a record
//! being written; a parent's batches (1 MiB) are lent by the piece server
//! for one piece at a time.
//!
//! A body or piece whose read or send was abandoned (an error, a timeout)
//! leaves the connection unusable: callers drop it then, as they do.

use std::io::{self, IoSliceMut};
use std::ops::Range;
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use super::assembly::{Assembly, BodyError};
use super::handshake::Established;
use super::record::{Direction, HEADER, MAX_PLAINTEXT, MAX_RECORD, OVERHEAD, Opened};
use super::{LowWater, read_when_ready};
use crate::buffer_pool::BufferPool;

/// Records a parent seals and writes at once when it sends a piece: 1 MiB,
/// which still fits a core's L2 cache between the read, the encryption and
/// the write. Measured on the 1 GiB p2p run (parent CPU s/GiB over
/// plaintext, median of three): 256 KiB +0.50, 512 KiB +0.32, 1 MiB +0.28,
/// 2 MiB +0.41 (user time up: the batch no longer fits). Fewer, larger
/// writes mean fewer wake-ups when the socket buffer fills.
pub const BATCH_RECORDS: usize = 64;
/// Bytes of one full record on the wire.
const RECORD_SLOT: usize = MAX_PLAINTEXT + OVERHEAD;
/// Bytes of a batch of records.
pub const BATCH_BYTES: usize = BATCH_RECORDS * RECORD_SLOT;
/// Plaintext bytes of a batch.
const BATCH_PLAINTEXT: usize = BATCH_RECORDS * MAX_PLAINTEXT;
/// Received bytes buffered for the byte-stream interface: room for a
/// record cut in two and a whole one after it.
const INCOMING: usize = 2 * MAX_RECORD;
/// Unsent sealed bytes at which a writer is made to wait.
const HIGH_WATER: usize = 16 * RECORD_SLOT;
/// Most bytes a child asks the kernel to collect before waking it.
const WAKE_BYTES: usize = crate::piece_client::WAKE_BYTES;

/// An encrypted piece connection.
pub struct Sealed {
    tcp: TcpStream,
    tx: Direction,
    rx: Direction,
    /// Received bytes: `incoming[plain]` opened and not yet read,
    /// `incoming[raw..filled]` records not yet opened.
    incoming: Vec<u8>,
    plain: Range<usize>,
    raw: usize,
    filled: usize,
    peer_closed: bool,
    /// Sealed bytes not yet written: `outgoing[sent..end]`; a record being
    /// filled by `poll_write` starts at `open`.
    outgoing: Vec<u8>,
    sent: usize,
    end: usize,
    open: Option<usize>,
    close_sent: bool,
    /// The socket's receive low-water mark.
    low_water: LowWater,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("tcp", &self.tcp).field("tx", &self.tx).field("rx", &self.rx).finish()
    }
}

impl Sealed {
    /// The connection whose handshake ended in `established`.
    pub fn new(tcp: TcpStream, established: Established) -> Self {
        let Established { tx, rx, plaintext, received, .. } = established;
        let mut incoming = plaintext;
        let plain = 0..incoming.len();
        incoming.extend_from_slice(&received);
        let filled = incoming.len();
        incoming.resize(filled.max(INCOMING), 0);
        Sealed {
            tcp,
            tx,
            rx,
            incoming,
            plain: plain.clone(),
            raw: plain.end,
            filled,
            peer_closed: false,
            outgoing: Vec::new(),
            sent: 0,
            end: 0,
            open: None,
            close_sent: false,
            low_water: LowWater::default(),
        }
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Records the sending key can still seal before the connection must end.
    pub fn records_left(&self) -> u64 {
        self.tx.remaining()
    }

    /// Sends `length` bytes of `file` from `offset` (after whatever was
    /// written before), each batch within `stall` (else `TimedOut`). The
    /// batch buffer comes from `batches` and goes back to it, so an idle
    /// connection holds none.
    pub async fn send_range(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        length: u64,
        stall: Duration,
        batches: &BufferPool,
    ) -> io::Result<()> {
        let stalled = || io::Error::new(io::ErrorKind::TimedOut, format!("the reader took nothing for {stall:?}"));
        self.seal_open()?;
        tokio::time::timeout(stall, std::future::poll_fn(|cx| self.poll_drain(cx))).await.map_err(|_| stalled())??;
        let step = |from: u64| (length - from).min(BATCH_PLAINTEXT as u64) as usize;
        let mut batch = batches.take_initialized(on_the_wire(step(0)));
        let mut at = 0u64;
        while at < length {
            let n = step(at);
            let batch_end = on_the_wire(n);
            let records = &mut batch[..batch_end];
            let mut payloads: Vec<IoSliceMut<'_>> = records
                .chunks_mut(RECORD_SLOT)
                .map(|record| {
                    let len = record.len() - OVERHEAD;
                    IoSliceMut::new(&mut record[HEADER..HEADER + len])
                })
                .collect();
            read_exact_vectored_at(file, &mut payloads, offset + at)?;
            for record in records.chunks_mut(RECORD_SLOT) {
                let len = record.len() - OVERHEAD;
                self.tx.seal_data(record, len)?;
            }
            tokio::time::timeout(stall, self.tcp.write_all(&batch[..batch_end])).await.map_err(|_| stalled())??;
            at += n as u64;
        }
        batches.give_back(batch);
        Ok(())
    }

    /// Reads a body of `length` bytes into `body`, which holds the part of
    /// it that came with the head (grown by
    /// [`BODY_SLACK`](super::assembly::BODY_SLACK) when it has no room for
    /// the records' overhead): see [`super::assembly`].
    pub async fn read_body(&mut self, body: &mut Vec<u8>, length: usize) -> io::Result<()> {
        let failed = |e: BodyError| match e {
            BodyError::TooLong => too_long(),
            BodyError::Closed(p) => closed_after(p, length),
            BodyError::Record(e) => e.into(),
        };
        if self.peer_closed {
            return Err(closed_after(body.len(), length));
        }
        // What was opened or received with the head comes first.
        let opened = body.len() + self.plain.len();
        let mut assembly = Assembly::new(body, opened, length).map_err(failed)?;
        body.extend_from_slice(&self.incoming[self.plain.clone()]);
        body.extend_from_slice(&self.incoming[self.raw..self.filled]);
        (self.plain, self.raw, self.filled) = (0..0, 0, 0);
        while !assembly.open(&mut self.rx, body).map_err(|e| {
            self.peer_closed = matches!(e, BodyError::Closed(_));
            failed(e)
        })? {
            assembly.make_room(body);
            let to_come = assembly.to_come(body);
            self.low_water.set(&self.tcp, to_come.clamp(1, WAKE_BYTES))?;
            // No more than the body's records can hold, so that a parent
            // cannot park bytes after the body in this connection.
            let spare = (body.capacity() - body.len()).min(to_come + MAX_RECORD);
            if read_when_ready(&self.tcp, body, spare).await? == 0 {
                return Err(closed_after(assembly.opened(), length));
            }
        }
        // Bytes of later records go back to the stream.
        let rest = assembly.finish(body);
        if rest.len() > self.incoming.len() {
            return Err(too_long());
        }
        self.incoming[..rest.len()].copy_from_slice(&rest);
        self.filled = rest.len();
        Ok(())
    }

    /// Sets the socket's receive low-water mark (before reading a head).
    pub fn set_low_water(&mut self, want: usize) -> io::Result<()> {
        self.low_water.set(&self.tcp, want)
    }

    /// Opens the next record into `plain`; false while it is incomplete.
    fn open_next(&mut self) -> io::Result<bool> {
        let at = self.raw;
        match self.rx.open(&mut self.incoming[..self.filled], at + HEADER, at)? {
            Some((wire, Opened::Data(n))) => {
                self.plain = at + HEADER..at + HEADER + n;
                self.raw += wire;
                Ok(true)
            }
            Some((wire, Opened::CloseNotify)) => {
                self.raw += wire;
                self.peer_closed = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads more records from the socket (nothing opened is waiting).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.raw == self.filled {
            (self.raw, self.filled) = (0, 0);
        } else if self.incoming.len() - self.filled < MAX_RECORD {
            self.incoming.copy_within(self.raw..self.filled, 0);
            self.filled -= self.raw;
            self.raw = 0;
        }
        let mut read = ReadBuf::new(&mut self.incoming[self.filled..]);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            let why = if self.raw == self.filled { "without close_notify" } else { "inside a TLS record" };
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the peer closed the connection {why}"),
            )));
        }
        self.filled += n;
        Poll::Ready(Ok(()))
    }

    /// Seals the record `poll_write` was filling, if any.
    fn seal_open(&mut self) -> io::Result<()> {
        if let Some(start) = self.open.take() {
            let len = self.end - start - HEADER;
            if self.outgoing.len() < start + len + OVERHEAD {
                self.outgoing.resize(start + len + OVERHEAD, 0);
            }
            self.end = start + self.tx.seal_data(&mut self.outgoing[start..], len)?;
        }
        Ok(())
    }

    /// Writes out every sealed byte (no record is being filled).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        debug_assert!(self.open.is_none());
        while self.sent < self.end {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..self.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        (self.sent, self.end) = (0, 0);
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Sealed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.incoming[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed || this.open_next()? {
                if this.peer_closed && this.plain.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            ready!(this.poll_fill(cx))?;
        }
    }
}

impl AsyncWrite for Sealed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // A write that left sealed bytes behind (the reader is slow) is
        // finished before more is taken, so the buffer does not creep.
        if this.sent > 0 || this.end >= HIGH_WATER {
            this.seal_open()?;
            ready!(this.poll_drain(cx))?;
        }
        let mut taken = 0;
        while taken < buf.len() && this.end < HIGH_WATER {
            let start = match this.open {
                Some(start) => start,
                None => {
                    this.open = Some(this.end);
                    this.end += HEADER;
                    this.end - HEADER
                }
            };
            if this.outgoing.len() < start + RECORD_SLOT {
                this.outgoing.resize(start + RECORD_SLOT, 0);
            }
            let len = this.end - start - HEADER;
            let n = (MAX_PLAINTEXT - len).min(buf.len() - taken);
            this.outgoing[this.end..this.end + n].copy_from_slice(&buf[taken..taken + n]);
            this.end += n;
            taken += n;
            if len + n == MAX_PLAINTEXT {
                this.seal_open()?;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.seal_open()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.seal_open()?;
        if !this.close_sent {
            let at = this.end;
            if this.outgoing.len() < at + 2 + OVERHEAD {
                this.outgoing.resize(at + 2 + OVERHEAD, 0);
            }
            this.end += this.tx.seal_close_notify(&mut this.outgoing[at..])?;
            this.close_sent = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// Bytes on the wire of `n` plaintext bytes in full records.
fn on_the_wire(n: usize) -> usize {
    n + n.div_ceil(MAX_PLAINTEXT) * OVERHEAD
}

/// The error of a body whose records carry more than its length.
fn too_long() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "parent sent more than it announced")
}

/// The error of a body cut short after `p` of `length` bytes.
fn closed_after(p: usize, length: usize) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("parent closed the connection after {p} of {length} bytes"))
}

/// Fills `bufs` from `file` at `offset` (`preadv`, again after a short read).
fn read_exact_vectored_at(file: &std::fs::File, mut bufs: &mut [IoSliceMut<'_>], mut offset: u64) -> io::Result<()> {
    while !bufs.is_empty() {
        let count = bufs.len().min(1024) as libc::c_int;
        // SAFETY: `IoSliceMut` has the layout of `iovec` on Unix, each one
        // points at a live, exclusively borrowed buffer of its length, and
        // the descriptor is `file`'s for the whole call.
        #[allow(unsafe_code)]
        let n = unsafe { libc::preadv(file.as_raw_fd(), bufs.as_ptr().cast(), count, offset as libc::off_t) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the content file ends before the piece"));
        }
        IoSliceMut::advance_slices(&mut bufs, n as usize);
        offset += n as u64;
    }
    Ok(())
}
