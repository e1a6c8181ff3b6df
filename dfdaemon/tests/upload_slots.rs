//! An upload slot is held until the piece's bytes have left the daemon, not
//! just until the response is built, so `upload.slots` bounds the memory that
//! slow peers can pin. A request that finds the slots full waits in line
//! (up to `MAX_WAIT`) and is served when one frees; past that it gets 503.

mod support;

use std::io::{Read as _, Write as _};

use darter_proto::common::v1::Download;
use darter_proto::dfdaemon::v1::DownloadTaskRequest;
use darter_proto::dfdaemon::v1::dfdaemon_download_client::DfdaemonDownloadClient;
use dfdaemon::piece_server::slots::MAX_WAIT;
use support::{Daemon, raw_get};
use testkit::data::{random_bytes, sha256_hex};
use testkit::metrics::{scrape, value};
use testkit::origin::{Behavior, Content, Origin};

/// Far more than loopback socket buffers hold, so a reader that stops reading
/// leaves most of the piece unsent.
const PIECE: usize = 64 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_keeps_its_slot_until_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let daemon = Daemon::start(dir.path(), &[("DFDAEMON__UPLOAD__SLOTS", "1")]).await;
    let data = random_bytes(PIECE, 30);
    let digest = format!("sha256:{}", sha256_hex(&data));
    origin.add("/big", Content::Bytes(data.clone()), Behavior::default());

    // dfget picks 256 KiB pieces for 64 MiB; ask for one 64 MiB piece instead.
    let channel = dfdaemon::dfget::connect(&daemon.socket).await.unwrap();
    let download = Download {
        url: origin.url("/big"),
        digest: Some(digest.clone()),
        piece_length: PIECE as u64,
        ..Default::default()
    };
    let mut events = DfdaemonDownloadClient::new(channel)
        .download_task(DownloadTaskRequest { download: Some(download) })
        .await
        .unwrap()
        .into_inner();
    while events.message().await.unwrap().is_some() {}
    let info = daemon.stat(&digest).await.unwrap();
    assert_eq!((info.piece_length, info.piece_count), (PIECE as u64, Some(1)));

    let port = daemon.piece_port;
    let path = format!("/v1/tasks/{digest}/pieces/0");
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(slow, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    slow.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    let started = std::time::Instant::now();
    let (status, _, _) = raw_get(port, "GET", &path);
    assert_eq!(status, 503, "the only slot is held while the slow reader has not taken the piece");
    assert!(started.elapsed() >= MAX_WAIT, "the request waited in line first: {:?}", started.elapsed());
    let (status, _, _) = raw_get(port, "GET", &path);
    assert_eq!(status, 503, "and stays held");

    // A request waiting in line gets the slot once the slow reader goes.
    let waiting = std::thread::spawn(move || raw_get(port, "GET", &path));
    // Seen waiting before its MAX_WAIT in line is up.
    let metrics = daemon.metrics_addr();
    testkit::eventually::try_poll("the request to wait in line", MAX_WAIT / 2, || async {
        let text = scrape(metrics).await?;
        Ok((value(&text, "dfdaemon_upload_waiting_requests") == Some(1.0)).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    drop(slow);
    let (status, _, body) = waiting.join().unwrap();
    assert_eq!(status, 200);
    assert!(body == data, "the waiting request got the whole piece");
}
