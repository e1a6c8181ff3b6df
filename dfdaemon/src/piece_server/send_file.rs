//! A byte range of a file to a TCP socket with `sendfile(2)`: the kernel
//! hands page-cache pages to the socket, so a served piece is never read
//! into the daemon's memory, zeroed or copied through it.
//!
//! The socket is non-blocking (tokio's): the loop waits for room in the send
//! buffer and sends what fits. The file side is a regular read of the page
//! cache; a piece that is not cached (an old task after memory pressure) is
//! read from disk on the calling thread, as a `pread` would be.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most bytes asked of one `sendfile` call (Linux moves at most ~2 GiB).
const MAX_CALL: u64 = 1 << 30;

/// One `sendfile` call: up to `count` bytes of `file` from `*offset`,
/// advancing it by what was sent.
fn sendfile_once(socket: &TcpStream, file: &File, offset: &mut libc::off_t, count: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call
    // (borrowed), `offset` points to one live off_t that the kernel reads and
    // updates, and failures are reported through the return value.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), offset, count) };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
}

/// Sends `length` bytes of `file` from `offset` to `socket`. Fails when the
/// reader takes nothing for `stall` (it keeps an upload slot meanwhile),
/// when the connection breaks, or when the file ends early (a task removed
/// and truncated under the upload).
pub async fn send_file(socket: &TcpStream, file: &File, offset: u64, length: u64, stall: Duration) -> io::Result<()> {
    let end = offset.checked_add(length).ok_or_else(|| io::Error::other("range overflows"))?;
    let mut at = libc::off_t::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    while (at as u64) < end {
        let count = (end - at as u64).min(MAX_CALL) as usize;
        let step = async {
            loop {
                socket.writable().await?;
                match socket.try_io(Interest::WRITABLE, || sendfile_once(socket, file, &mut at, count)) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        };
        let sent = tokio::time::timeout(stall, step)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("the reader took nothing for {stall:?}")))??;
        if sent == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ended before the range"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[tokio::test]
    async fn sends_the_range_and_reports_a_short_file() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let socket = TcpStream::connect(addr).await.unwrap();
        send_file(&socket, &file, 1_000, 2_000_000, Duration::from_secs(10)).await.unwrap();
        let past_the_end = send_file(&socket, &file, 2_999_000, 2_000, Duration::from_secs(10)).await;
        assert_eq!(past_the_end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        drop(socket);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 2_000_000 + 1_000);
        assert_eq!(&got[..2_000_000], &data[1_000..2_001_000]);
        assert_eq!(&got[2_000_000..], &data[2_999_000..]);
    }

    #[tokio::test]
    async fn a_reader_that_takes_nothing_times_out() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 32 << 20]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = TcpStream::connect(addr).await.unwrap();
        let (_idle, _) = listener.accept().await.unwrap();
        let e = send_file(&socket, &file, 0, 32 << 20, Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
