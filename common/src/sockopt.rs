//! Socket options that std and tokio do not expose, for bulk transfers (the
//! piece path, the swarm benchmark's calibration): a TCP receive low-water
//! mark and a fixed send buffer.
//!
//! Both exist to cut wake-ups, which on shaped or virtual links cost more
//! than the bytes: a link that delivers a few packets at a time would
//! otherwise wake the receiver for every few kilobytes, and a sender whose
//! buffer autotunes small is woken every time it drains.

use std::io;
use std::os::fd::AsRawFd;

fn set_int(socket: &impl AsRawFd, level: libc::c_int, name: libc::c_int, value: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: the pointer and length describe one live c_int; the kernel
    // only reads it, and a bad descriptor or option is reported as an error.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Readiness for reading is reported only once `bytes` are queued (or the
/// peer closed). Linux TCP wakes a waiting reader only at that point, so a
/// receiver that knows how much is coming sleeps through the packet trains.
/// Set it to at most what is still expected, or the last bytes never wake.
pub fn set_recv_low_water(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    set_int(socket, libc::SOL_SOCKET, libc::SO_RCVLOWAT, bytes.max(1))
}

/// Fixes the send buffer at `bytes` (the kernel doubles it for its own
/// bookkeeping), so one write can queue a whole piece.
pub fn set_send_buffer(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    set_int(socket, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_int(socket: &impl AsRawFd, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the pointers describe one live c_int and its length.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn options_reach_the_kernel() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        set_recv_low_water(&stream, 64 * 1024).unwrap();
        assert_eq!(get_int(&stream, libc::SO_RCVLOWAT), 64 * 1024);
        set_recv_low_water(&stream, 0).unwrap();
        assert_eq!(get_int(&stream, libc::SO_RCVLOWAT), 1, "zero would never be ready; it means one byte");
        set_send_buffer(&stream, 1 << 20).unwrap();
        assert!(get_int(&stream, libc::SO_SNDBUF) >= 1 << 20);
    }

    #[test]
    fn an_invalid_descriptor_is_an_error() {
        struct Bad;
        impl AsRawFd for Bad {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                -1
            }
        }
        assert!(set_send_buffer(&Bad, 1024).is_err());
    }
}
