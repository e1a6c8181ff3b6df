//! Addresses for tests about what is not there.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A loopback address that refuses connections: a port the kernel handed
/// to a listener that is closed again before this returns. Nothing in the
/// kit binds it afterwards (nobody else is told it), so connecting to it
/// fails with "connection refused" for as long as a test runs, unless
/// another process's listener happens to be given the same port by the
/// kernel.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound listener has an address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_answers_there() {
        let addr = refused_addr();
        let err = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}: {err}");
    }
}
