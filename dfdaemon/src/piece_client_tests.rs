//! Tests of the piece client against scripted servers: what each answer
//! becomes, which connections are kept, and bodies that arrive in pieces.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// What the scripted server does with one request.
#[derive(Clone)]
struct Answer {
    /// Raw response bytes, written in these chunks with a pause between them.
    chunks: Vec<Vec<u8>>,
    /// Close the connection after answering.
    close: bool,
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

fn answer(bytes: Vec<u8>) -> Answer {
    Answer { chunks: vec![bytes], close: false }
}

/// A server that answers the n-th request (over all connections) with
/// `script[n]`, counting connections.
async fn scripted(script: Vec<Answer>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let (script, next) = (script.clone(), next.clone());
            tokio::spawn(async move {
                while read_request(&mut stream).await.is_some() {
                    let Some(a) = script.get(next.fetch_add(1, Ordering::SeqCst)).cloned() else { return };
                    for (i, chunk) in a.chunks.iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if stream.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                    if a.close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if stream.read(&mut b).await.ok()? == 0 {
            return None;
        }
        got.push(b[0]);
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

fn client() -> PieceClient {
    PieceClient::new(4, Duration::from_secs(2))
}

#[tokio::test]
async fn a_piece_arrives_whole_and_its_connection_is_kept() {
    let (addr, accepted) = scripted(vec![answer(ok(b"first")), answer(ok(b"second"))]).await;
    let c = client();
    assert_eq!(c.fetch(addr, "/v1/tasks/t/pieces/0", 5, 0).await.unwrap(), &b"first"[..]);
    assert_eq!(c.idle_connections(), 1);
    assert_eq!(c.fetch(addr, "/v1/tasks/t/pieces/1", 6, 0).await.unwrap(), &b"second"[..]);
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the second request reused the connection");
}

#[tokio::test]
async fn a_dropped_piece_lends_its_buffer_to_the_next() {
    let body = vec![3u8; 100_000];
    let (addr, _) = scripted(vec![answer(ok(&body)), answer(ok(&body)), answer(ok(&body))]).await;
    let c = client();
    let first = c.fetch(addr, "/v1/tasks/t/pieces/0", body.len() as u64, 0).await.unwrap();
    let memory = first.as_ptr();
    let held = c.fetch(addr, "/v1/tasks/t/pieces/1", body.len() as u64, 0).await.unwrap();
    assert_ne!(held.as_ptr(), memory, "a buffer in use is not lent twice");
    drop(first);
    let third = c.fetch(addr, "/v1/tasks/t/pieces/2", body.len() as u64, 0).await.unwrap();
    assert_eq!(third.as_ptr(), memory, "the first piece's buffer came back and was reused");
    assert_eq!((&third[..], &held[..]), (&body[..], &body[..]));
    drop((held, third));
    c.release_buffers();
    assert_eq!(c.buffers.idle_bytes(), 0);
}

#[tokio::test]
async fn a_body_larger_than_the_wake_size_arrives_in_bursts() {
    // Not a multiple of WAKE_BYTES, so the last wait asks for less.
    let body: Vec<u8> = (0..WAKE_BYTES * 2 + 12_345).map(|i| (i % 251) as u8).collect();
    let response = ok(&body);
    // Head split from the body, the body in uneven bursts.
    let cuts = [10, 300, 70_000, WAKE_BYTES + 5, response.len()];
    let mut chunks = Vec::new();
    let mut at = 0;
    for c in cuts {
        chunks.push(response[at..c].to_vec());
        at = c;
    }
    let (addr, _) = scripted(vec![Answer { chunks, close: false }]).await;
    let got = client().fetch(addr, "/p", body.len() as u64, 0).await.unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the body arrived intact");
}

#[tokio::test]
async fn a_busy_parent_is_busy_and_its_connection_stays_usable() {
    let busy = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 18\r\n\r\nupload slots full\n".to_vec();
    let (addr, accepted) = scripted(vec![answer(busy), answer(ok(b"piece"))]).await;
    let c = client();
    assert_eq!(c.fetch(addr, "/p", 5, 0).await, Err(FetchError::Busy));
    assert_eq!(c.fetch(addr, "/p", 5, 0).await.unwrap(), &b"piece"[..]);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_statuses_are_reported() {
    let missing = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec();
    let (addr, _) = scripted(vec![answer(missing)]).await;
    assert_eq!(client().fetch(addr, "/p", 5, 0).await, Err(FetchError::Status(404)));
}

#[tokio::test]
async fn a_wrong_length_is_refused_and_the_connection_dropped() {
    let (addr, _) = scripted(vec![answer(ok(b"four"))]).await;
    let c = client();
    let e = c.fetch(addr, "/p", 5, 0).await.unwrap_err();
    assert!(e.to_string().contains("announced 4 bytes for a piece of 5"), "{e}");
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn chunked_and_malformed_heads_are_refused() {
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
    let (addr, _) = scripted(vec![answer(chunked)]).await;
    let e = client().fetch(addr, "/p", 5, 0).await.unwrap_err();
    assert!(e.to_string().contains("chunked"), "{e}");

    let (addr, _) = scripted(vec![answer(b"NOT HTTP AT ALL\r\n\r\n".to_vec())]).await;
    let e = client().fetch(addr, "/p", 5, 0).await.unwrap_err();
    assert!(e.to_string().contains("bad response head"), "{e}");

    let (addr, _) = scripted(vec![answer(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n".to_vec())]).await;
    let e = client().fetch(addr, "/p", 5, 0).await.unwrap_err();
    assert!(e.to_string().contains("content-length"), "{e}");
}

#[tokio::test]
async fn a_parent_that_hangs_up_mid_piece_is_an_error() {
    let mut cut = ok(b"0123456789");
    cut.truncate(cut.len() - 4);
    let (addr, _) = scripted(vec![Answer { chunks: vec![cut], close: true }]).await;
    let e = client().fetch(addr, "/p", 10, 0).await.unwrap_err();
    assert!(e.to_string().contains("after 6 of 10 bytes"), "{e}");
}

#[tokio::test]
async fn a_kept_connection_the_parent_closed_is_replaced() {
    // The parent answers and hangs up without saying so.
    let (addr, accepted) = scripted(vec![Answer { chunks: vec![ok(b"one")], close: true }, answer(ok(b"two"))]).await;
    let c = client();
    assert_eq!(c.fetch(addr, "/p", 3, 0).await.unwrap(), &b"one"[..]);
    assert_eq!(c.idle_connections(), 1);
    // Whether the close has reached this side yet or not, the kept
    // connection yields no answer byte and the request goes out again.
    assert_eq!(c.fetch(addr, "/p", 3, 0).await.unwrap(), &b"two"[..]);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_vec();
    let (addr, _) = scripted(vec![answer(close)]).await;
    let c = client();
    assert_eq!(c.fetch(addr, "/p", 2, 0).await.unwrap(), &b"ok"[..]);
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn nobody_listening_is_a_transport_error() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let e = client().fetch(addr, "/p", 1, 0).await.unwrap_err();
    assert!(matches!(e, FetchError::Transport(ref m) if m.contains("connect to")), "{e}");
}

/// A piece server over a task whose second piece (1000 bytes) is stored;
/// its address, the task and that piece. Encrypted with `encryption`.
async fn real_piece_server(
    encryption: Option<crate::piece_server::Encryption>,
) -> (SocketAddr, darter_common::task_id::TaskId, Vec<u8>, tokio_util::sync::CancellationToken, tempfile::TempDir) {
    use darter_common::digest::Digest;

    use crate::metrics::Metrics;
    use crate::piece_server::{Limits, PieceServer};
    use crate::storage::{Shape, Storage};

    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Storage::open(dir.path()).unwrap());
    let id = darter_common::task_id::TaskId::parse(&"ab".repeat(32)).unwrap();
    let piece_length = darter_common::piece::MIN_PIECE_LENGTH;
    let content: Vec<u8> = (0..piece_length + 1000).map(|i| (i * 7 % 256) as u8).collect();
    let shape = Shape { content_length: Some(content.len() as u64), piece_length, validator: None };
    let lease = storage.open_task(&id, &darter_common::secret::redact_url_str("http://origin/f"), shape).unwrap();
    let second = content[piece_length as usize..].to_vec();
    lease.write_piece(1, piece_length, &[&second], Digest::of(&second)).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let limits = Limits { slots: 4, ..Limits::default() };
    let server = PieceServer::with_security(storage, limits, Arc::new(Metrics::new()), None, encryption);
    tokio::spawn(server.serve(listener, shutdown.clone()));
    (addr, id, second, shutdown, dir)
}

#[tokio::test]
async fn the_real_piece_server_serves_the_client() {
    use crate::piece_server::piece_path;

    let (addr, id, second, shutdown, _dir) = real_piece_server(None).await;
    let piece_length = darter_common::piece::MIN_PIECE_LENGTH;
    let c = client();
    assert_eq!(c.fetch(addr, &piece_path(&id, 1), 1000, 0).await.unwrap(), second);
    assert_eq!(c.fetch(addr, &piece_path(&id, 0), piece_length, 0).await, Err(FetchError::Status(404)));
    assert_eq!(c.fetch(addr, &piece_path(&id, 1), 1000, 0).await.unwrap(), second);
    assert_eq!(c.idle_connections(), 1);
    shutdown.cancel();
}

/// Encrypted (`upload.encrypt`): the client and server each run their own
/// record layer after rustls's handshake, on one kept connection; a HEAD
/// answer (written, not sent with a body) reaches a plain rustls client
/// before its next request.
#[tokio::test]
async fn the_real_piece_server_serves_the_client_encrypted() {
    use darter_common::tls::{Expect, Role};
    use testkit::pki::{self, TestCa};

    use crate::piece_server::{Encryption, piece_path};

    let ca = TestCa::new();
    let parent = ca.transport(&pki::identity(Role::Peer, "parent"));
    let child = ca.transport(&pki::identity(Role::Peer, "child"));
    let (addr, id, second, shutdown, _dir) = real_piece_server(Encryption::new(&parent, pki::CLUSTER)).await;
    let config = child.piece_client_config(Expect::daemon(pki::CLUSTER)).unwrap();
    let c = client().with_tls(Some(config.clone()));
    let source = Source { addr, encrypted: true, grant: "".into() };
    let piece_length = darter_common::piece::MIN_PIECE_LENGTH;
    for _ in 0..3 {
        assert_eq!(c.fetch_from(&source, &piece_path(&id, 1), 1000, 0).await.unwrap(), second);
        assert_eq!(c.fetch_from(&source, &piece_path(&id, 0), piece_length, 0).await, Err(FetchError::Status(404)));
    }
    assert_eq!(c.idle_connections(), 1);

    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, TcpStream::connect(addr).await.unwrap()).await.unwrap();
    let path = piece_path(&id, 1);
    tls.write_all(format!("HEAD {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut byte)).await.expect("the HEAD answer");
        assert_eq!(n.unwrap(), 1, "{}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    tls.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.expect("the answer, then close_notify");
    assert!(
        answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(&second),
        "{}",
        String::from_utf8_lossy(&answer[..64])
    );
    shutdown.cancel();
}
