//! The record layer against rustls on the other end (both directions, both
//! bulk paths), and against altered, replayed and cut records.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use darter_common::tls::{Expect, Role, Transport};
use rustls::ConnectionTrafficSecrets;
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::pki_types::ServerName;
use testkit::pki::{self, TestCa};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::record::{Direction, HEADER, MAX_PLAINTEXT, OVERHEAD, Opened, RecordError};
use super::{Sealed, handshake};

const STALL: Duration = Duration::from_secs(10);

fn pair(ca: &TestCa) -> (Transport, Transport) {
    (ca.transport(&pki::identity(Role::Peer, "parent")), ca.transport(&pki::identity(Role::Peer, "child")))
}

fn client_config(child: &Transport) -> Arc<rustls::ClientConfig> {
    child.piece_client_config(Expect::daemon(pki::CLUSTER)).unwrap()
}

fn name() -> ServerName<'static> {
    ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into())
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

/// A content file holding `data`.
fn content(data: &[u8]) -> (tempfile::NamedTempFile, std::fs::File) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    let file = f.reopen().unwrap();
    (f, file)
}

/// A listener and a connected TCP pair.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (accepted.unwrap().0, client.unwrap())
}

/// Reads until a `\r\n\r\n`-ended head; returns it and what came after.
async fn read_head(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    loop {
        let mut chunk = [0u8; 1000];
        let n = r.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed inside the head: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(at + 4);
            return (String::from_utf8(got).unwrap(), rest);
        }
    }
}

#[tokio::test]
async fn a_rustls_child_reads_what_a_sealed_parent_sends() {
    let ca = TestCa::new();
    let (parent, child) = pair(&ca);
    let data = bytes(3 * MAX_PLAINTEXT * 7 + 12_345, 1);
    let (_keep, file) = content(&data);
    let (mut server_tcp, client_tcp) = tcp_pair().await;
    let server_config = parent.piece_server_config().unwrap();
    let total = data.len() as u64;
    let batches = crate::buffer_pool::BufferPool::new(1 << 20);
    let server = async move {
        let established = handshake::server(server_config, &mut server_tcp).await.unwrap();
        assert!(established.peer.is_some(), "the child's certificate");
        let mut sealed = Sealed::new(server_tcp, established);
        for round in 0..3u64 {
            let (request, _) = read_head(&mut sealed).await;
            assert!(request.starts_with(&format!("GET /{round} ")), "{request}");
            // Pieces at odd offsets and lengths, after a head written as bytes.
            let (offset, length) = (round * 1000 + 7, total - round * 5000 - 7);
            sealed.write_all(format!("HEAD {length}\r\n\r\n").as_bytes()).await.unwrap();
            sealed.send_range(&file, offset, length, STALL, &batches).await.unwrap();
        }
        sealed.shutdown().await.unwrap();
    };
    let client = async move {
        let connector = tokio_rustls::TlsConnector::from(client_config(&child));
        let mut tls = connector.connect(name(), client_tcp).await.unwrap();
        for round in 0..3u64 {
            tls.write_all(format!("GET /{round} HTTP/1.1\r\n\r\n").as_bytes()).await.unwrap();
            let (head, mut body) = read_head(&mut tls).await;
            let length: usize = head.trim().strip_prefix("HEAD ").unwrap().parse().unwrap();
            while body.len() < length {
                let mut chunk = vec![0u8; 64 << 10];
                let n = tls.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                body.extend_from_slice(&chunk[..n]);
            }
            let offset = (round * 1000 + 7) as usize;
            assert!(body == data[offset..offset + length], "round {round}: the bytes of the file");
        }
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await.expect("a clean close_notify");
        assert!(rest.is_empty());
    };
    tokio::join!(server, client);
}

/// A child on the record layer connected to a parent on rustls, both
/// past the handshake.
async fn sealed_child_of_a_rustls_parent(ca: &TestCa) -> (Sealed, tokio_rustls::server::TlsStream<TcpStream>) {
    let (parent, child) = pair(ca);
    let (server_tcp, mut client_tcp) = tcp_pair().await;
    let acceptor = tokio_rustls::TlsAcceptor::from(parent.piece_server_config().unwrap());
    let (tls, established) =
        tokio::join!(acceptor.accept(server_tcp), handshake::client(client_config(&child), name(), &mut client_tcp));
    (Sealed::new(client_tcp, established.unwrap()), tls.unwrap())
}

#[tokio::test]
async fn a_sealed_child_reads_what_a_rustls_parent_sends() {
    let (mut sealed, mut tls) = sealed_child_of_a_rustls_parent(&TestCa::new()).await;
    let data = bytes(5 * MAX_PLAINTEXT + 999, 2);
    let sent = data.clone();
    let server = async move {
        // Records of every size: head and body in one write, in many small
        // writes, and cut at odd places.
        for (round, step) in [usize::MAX, 1000, 16_385, 77].into_iter().enumerate() {
            let (request, _) = read_head(&mut tls).await;
            assert!(request.starts_with(&format!("GET /{round} ")), "{request}");
            let mut answer = format!("LEN {}\r\n\r\n", sent.len()).into_bytes();
            answer.extend_from_slice(&sent);
            for chunk in answer.chunks(step.min(answer.len())) {
                tls.write_all(chunk).await.unwrap();
            }
            tls.flush().await.unwrap();
        }
        tls.shutdown().await.unwrap();
    };
    let client = async move {
        for round in 0..4 {
            sealed.write_all(format!("GET /{round} HTTP/1.1\r\n\r\n").as_bytes()).await.unwrap();
            sealed.flush().await.unwrap();
            let (head, mut body) = read_head(&mut sealed).await;
            let length: usize = head.trim().strip_prefix("LEN ").unwrap().parse().unwrap();
            sealed.read_body(&mut body, length).await.unwrap();
            assert!(body == data, "round {round}: the parent's bytes");
        }
        let mut rest = Vec::new();
        sealed.read_to_end(&mut rest).await.expect("EOF at close_notify");
        assert!(rest.is_empty());
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn a_child_that_gets_more_than_announced_or_a_cut_connection_fails() {
    let ca = TestCa::new();
    for (announce, send, close) in [(100, 200, false), (50_000, 20_000, true)] {
        let (mut sealed, mut tls) = sealed_child_of_a_rustls_parent(&ca).await;
        let server = async move {
            tls.write_all(&bytes(send, 3)).await.unwrap();
            if close {
                tls.shutdown().await.unwrap();
            }
            tls
        };
        let client = async {
            let mut body = Vec::new();
            sealed.read_body(&mut body, announce).await.unwrap_err().to_string()
        };
        let (_tls, error) = tokio::join!(server, client);
        let expected = if close { "closed the connection after 20000 of 50000" } else { "more than it announced" };
        assert!(error.contains(expected), "{error}");
    }
}

#[tokio::test]
async fn a_client_of_another_ca_learns_why_it_was_refused() {
    let (ca, other) = (TestCa::new(), TestCa::new());
    let (parent, _) = pair(&ca);
    let (_, stranger) = pair(&other);
    let (mut server_tcp, mut client_tcp) = tcp_pair().await;
    let server_config = parent.piece_server_config().unwrap();
    let (server, client) = tokio::join!(
        handshake::server(server_config, &mut server_tcp),
        handshake::client(client_config(&stranger), name(), &mut client_tcp)
    );
    let (server, client) = (server.unwrap_err().to_string(), client.unwrap_err().to_string());
    // The stranger refuses the parent's certificate and says so in an alert.
    assert!(client.contains("invalid peer certificate"), "{client}");
    assert!(server.contains("received fatal alert"), "{server}");
}

/// Two ends of one direction, as after a handshake.
fn direction_pair() -> (Direction, Direction) {
    let secrets =
        || ConnectionTrafficSecrets::Chacha20Poly1305 { key: AeadKey::from([7u8; 32]), iv: Iv::new([9u8; 12]) };
    (Direction::new((5, secrets())).unwrap(), Direction::new((5, secrets())).unwrap())
}

fn sealed_record(tx: &mut Direction, plaintext: &[u8]) -> Vec<u8> {
    let mut record = vec![0u8; plaintext.len() + OVERHEAD];
    record[HEADER..HEADER + plaintext.len()].copy_from_slice(plaintext);
    let n = tx.seal_data(&mut record, plaintext.len()).unwrap();
    assert_eq!(n, record.len());
    record
}

#[test]
fn records_open_in_place_or_moved_down_and_only_once() {
    let (mut tx, mut rx) = direction_pair();
    let first = sealed_record(&mut tx, b"hello");
    let second = sealed_record(&mut tx, b"world!");
    // Cut: not yet a record.
    let mut buf = first[..first.len() - 1].to_vec();
    assert_eq!(rx.open(&mut buf, HEADER, 0).unwrap(), None);
    // Both in one buffer, the second moved down to follow the first.
    let mut buf = [first.clone(), second.clone()].concat();
    let (wire, opened) = rx.open(&mut buf, 0, 0).unwrap().unwrap();
    assert_eq!((wire, opened), (first.len(), Opened::Data(5)));
    let (_, opened) = rx.open(&mut buf, 5, wire).unwrap().unwrap();
    assert_eq!(opened, Opened::Data(6));
    assert_eq!(&buf[..11], b"helloworld!");
    // Replayed: the sequence number moved on.
    let mut again = second.clone();
    assert_eq!(rx.open(&mut again, HEADER, 0), Err(RecordError::Forged));
}

#[test]
fn altered_records_and_alerts_are_refused() {
    // The type, the version, the payload, the inner type, the tag (a longer
    // length only makes the record look incomplete until its bytes come).
    for at in [0usize, 1, 2, HEADER, HEADER + 2, HEADER + 5, HEADER + 20] {
        let (mut tx, mut rx) = direction_pair();
        let mut record = sealed_record(&mut tx, b"hello");
        record[at] ^= 1;
        let refused = rx.open(&mut record, HEADER, 0).unwrap_err();
        assert!(
            matches!(refused, RecordError::Forged | RecordError::Malformed(_) | RecordError::Unexpected(_)),
            "byte {at}: {refused:?}"
        );
    }
    let (mut tx, mut rx) = direction_pair();
    let mut close = vec![0u8; 2 + OVERHEAD];
    tx.seal_close_notify(&mut close).unwrap();
    assert_eq!(rx.open(&mut close, HEADER, 0).unwrap().unwrap().1, Opened::CloseNotify);
    let mut too_long = [23u8, 3, 3, 0xff, 0xff].to_vec();
    too_long.resize(70_000, 0);
    assert!(matches!(rx.open(&mut too_long, HEADER, 0), Err(RecordError::Malformed(_))));
}

#[test]
fn a_key_seals_at_most_its_record_limit() {
    let secrets = ConnectionTrafficSecrets::Chacha20Poly1305 { key: AeadKey::from([1u8; 32]), iv: Iv::new([2u8; 12]) };
    let mut tx = Direction::new((super::record::RECORD_LIMIT - 1, secrets)).unwrap();
    assert_eq!(tx.remaining(), 1);
    let mut record = vec![0u8; 1 + OVERHEAD];
    tx.seal_data(&mut record, 1).unwrap();
    assert_eq!(tx.seal_data(&mut record, 1), Err(RecordError::Exhausted));
}

/// A handshake message cut short and then an alert (or any record) made
/// rustls fail with its buffer half read; sending the alert must not take
/// the task down, on either side, and before any certificate is checked.
#[tokio::test]
async fn a_cut_handshake_message_followed_by_an_alert_is_refused_without_a_panic() {
    let ca = TestCa::new();
    let (parent, child) = pair(&ca);
    let hostile: [&[u8]; 2] = [&[0x16, 3, 1, 0, 4, 1, 0, 1, 0], &[0x15, 3, 3, 0, 2, 2, 40]];
    let hostile_ccs: [&[u8]; 2] = [&[0x16, 3, 3, 0, 4, 2, 0, 1, 0], &[0x14, 3, 3, 0, 1, 1]];
    for records in [hostile, hostile_ccs] {
        let (mut server_tcp, mut client_tcp) = tcp_pair().await;
        let server = handshake::server(parent.piece_server_config().unwrap(), &mut server_tcp);
        let stranger = async {
            for r in records {
                client_tcp.write_all(r).await.unwrap();
            }
        };
        let (refused, ()) = tokio::join!(server, stranger);
        assert!(refused.is_err(), "the server refused");
    }
    // The same from a "server" towards a child.
    let (mut server_tcp, mut client_tcp) = tcp_pair().await;
    let child_side = handshake::client(client_config(&child), name(), &mut client_tcp);
    let fake_server = async {
        let mut hello = [0u8; 512];
        let _ = server_tcp.read(&mut hello).await.unwrap();
        for r in hostile_ccs {
            server_tcp.write_all(r).await.unwrap();
        }
    };
    let (refused, ()) = tokio::join!(child_side, fake_server);
    assert!(refused.is_err(), "the child refused");
}

#[test]
fn alerts_of_any_level_oversized_and_endless_empty_records() {
    let seal_raw = |tx: &mut Direction, inner: &[u8], content_type: u8| {
        // A record whose inner plaintext is `inner` then `content_type`,
        // sealed the way a peer could (through the alert path's layout).
        let mut record = vec![0u8; inner.len() + OVERHEAD];
        record[HEADER..HEADER + inner.len()].copy_from_slice(inner);
        tx.seal_for_tests(&mut record, inner.len(), content_type).unwrap();
        record
    };
    let (mut tx, mut rx) = direction_pair();
    let mut fatal_close = seal_raw(&mut tx, &[2, 0], 21);
    assert_eq!(rx.open(&mut fatal_close, HEADER, 0).unwrap().unwrap().1, Opened::CloseNotify);
    let mut bad_mac = seal_raw(&mut tx, &[2, 20], 21);
    assert_eq!(rx.open(&mut bad_mac, HEADER, 0), Err(RecordError::Alert(20)));
    let mut long_alert = seal_raw(&mut tx, &[2, 20, 1], 21);
    assert!(matches!(rx.open(&mut long_alert, HEADER, 0), Err(RecordError::Malformed(_))));
    let mut handshake = seal_raw(&mut tx, &[4, 0, 0, 0], 22);
    assert_eq!(rx.open(&mut handshake, HEADER, 0), Err(RecordError::Unexpected(22)));
    let mut oversized = seal_raw(&mut tx, &vec![1u8; MAX_PLAINTEXT + 1], 23);
    assert!(matches!(rx.open(&mut oversized, HEADER, 0), Err(RecordError::Malformed(_))));

    let (mut tx, mut rx) = direction_pair();
    for i in 0..40 {
        let mut empty = seal_raw(&mut tx, &[], 23);
        let opened = rx.open(&mut empty, HEADER, 0);
        if i < 32 {
            assert_eq!(opened.unwrap().unwrap().1, Opened::Data(0), "empty record {i}");
        } else {
            assert!(matches!(opened, Err(RecordError::Malformed(_))), "empty record {i}: {opened:?}");
            break;
        }
    }
}
