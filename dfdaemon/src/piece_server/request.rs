//! Reading HTTP/1.1 request heads on a piece connection: bounded in size,
//! parsed with `httparse`, kept-alive connections and pipelined requests
//! handled (bytes after one head stay buffered for the next).

use darter_common::tls::grant::GRANT_HEADER;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed in a request head.
const MAX_HEADERS: usize = 32;

/// What the server needs of a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The target's path, without a query.
    pub path: String,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// Pieces of the task the requester holds ([`super::slots::HAVE_HEADER`]).
    pub have: Option<u32>,
    /// The requester's piece grant ([`GRANT_HEADER`]), unchecked.
    pub grant: Option<String>,
}

/// Why a request head was refused; the connection is answered and closed.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// Longer than [`MAX_HEAD`] (431).
    TooLarge,
    /// Not HTTP/1.x, or a request with a body: piece requests have none (400).
    Malformed(String),
}

/// Reads the next request head from `stream`, with `buf` holding what was
/// read past the previous one. `Ok(None)`: the client closed the connection
/// between requests.
pub async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<Result<Option<Request>, BadRequest>> {
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Ok(Some((request, len))) => {
                    buf.drain(..len);
                    return Ok(Ok(Some(request)));
                }
                Ok(None) if buf.len() >= MAX_HEAD => return Ok(Err(BadRequest::TooLarge)),
                Ok(None) => {}
                Err(bad) => return Ok(Err(bad)),
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk[..(MAX_HEAD - buf.len()).min(4096)]).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(Ok(None))
            } else {
                Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed inside a request head"))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses one request head (bytes from the network); `None` while it is
/// incomplete, else the request and the length of its head.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadRequest::TooLarge),
        Err(e) => return Err(BadRequest::Malformed(e.to_string())),
    };
    let http11 = req.version == Some(1);
    let mut keep_alive = http11;
    let (mut have, mut grant) = (None, None);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case(GRANT_HEADER) {
            grant = std::str::from_utf8(h.value).ok().map(str::to_string);
        } else if h.name.eq_ignore_ascii_case(super::slots::HAVE_HEADER) {
            have = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(h.value);
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.iter().any(|&b| b != b'0'))
        {
            return Err(BadRequest::Malformed("piece requests carry no body".into()));
        }
    }
    let target = req.path.unwrap_or("/");
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_string();
    Ok(Some((Request { method: req.method.unwrap_or_default().to_string(), path, keep_alive, have, grant }, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Result<Option<(Request, usize)>, BadRequest> {
        parse(raw.as_bytes())
    }

    #[test]
    fn heads_keep_alive_and_pipelining() {
        let (r, len) = parsed("GET /v1/x?y=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /next").unwrap().unwrap();
        assert_eq!(
            r,
            Request { method: "GET".into(), path: "/v1/x".into(), keep_alive: true, have: None, grant: None }
        );
        let (r, _) = parsed("GET / HTTP/1.1\r\nX-Darter-Grant: 01ab\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.grant.as_deref(), Some("01ab"));
        let (r, _) = parsed("GET / HTTP/1.1\r\nX-Darter-Have: 17\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.have, Some(17));
        let (r, _) = parsed("GET / HTTP/1.1\r\nX-Darter-Have: lots\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.have, None, "an unreadable count is no count");
        assert_eq!(len, "GET /v1/x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n".len());
        let (r, _) = parsed("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parsed("HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parsed("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(r.keep_alive);
        assert_eq!(parsed("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn bodies_and_garbage_are_refused() {
        assert!(matches!(parsed("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), Err(BadRequest::Malformed(_))));
        assert!(parsed("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap().is_some());
        assert!(matches!(
            parsed("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(BadRequest::Malformed(_))
        ));
        assert!(matches!(parsed("\x16\x03\x01 hello\r\n\r\n"), Err(BadRequest::Malformed(_))));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(parsed(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(BadRequest::TooLarge));
    }
}
