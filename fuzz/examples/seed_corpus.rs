//! Writes the seed inputs of `scheduler_stream` that are binary: a real
//! download's announce messages encoded with prost, framed as the target
//! reads them, and a real member certificate (DER). The other targets' seeds
//! are text, written by hand. Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus`.

use std::path::Path;

use darter_common::digest::Digest;
use darter_common::task_id::TaskId;
use darter_common::tls::grant::{DEFAULT_TTL, Issuer};
use darter_common::tls::{Identity, Role, Transport};
use darter_fuzz::stream::{Op, push};
use darter_proto::common::v1 as pb;
use darter_proto::scheduler::v1::announce_peer_request::Request;
use darter_proto::scheduler::v1::{self as spb, AnnouncePeerRequest};
use prost::Message;

const URL: &str = "http://origin.example/blobs/file.bin";
const PIECE: u64 = 262_144;
const LEN: u64 = 3 * PIECE;

fn host(id: &str, ip: &str) -> spb::AnnounceHostRequest {
    let host = pb::Host {
        id: id.into(),
        hostname: id.into(),
        ip: ip.into(),
        port: 4000,
        download_port: 4003,
        r#type: pb::HostType::Normal as i32,
        network: Some(pb::Network { upload_slots: 8, ..Default::default() }),
        ..Default::default()
    };
    spb::AnnounceHostRequest { host: Some(host), interval_ms: 30_000 }
}

fn piece(n: u32) -> pb::Piece {
    let digest = Digest::of(format!("piece {n}").as_bytes());
    pb::Piece {
        number: n,
        offset: u64::from(n) * PIECE,
        length: PIECE,
        digest: digest.to_string(),
        ..Default::default()
    }
}

/// A peer's messages on one stream.
struct Peer<'a> {
    out: &'a mut Vec<u8>,
    stream: u8,
    host: &'static str,
    peer: &'static str,
}

impl Peer<'_> {
    fn send(&mut self, request: Request) {
        let message = AnnouncePeerRequest {
            host_id: self.host.into(),
            task_id: TaskId::for_download(URL, None, "", "").expect("a URL").to_string(),
            peer_id: self.peer.into(),
            request: Some(request),
        };
        push(self.out, Op::Message, self.stream, &message.encode_to_vec());
    }
}

/// A is sent to the origin and reports its pieces; B fetches from A, asks
/// to be rescheduled, reports a bad parent and finishes; then the calls
/// around a download and a collection.
fn download() -> Vec<u8> {
    let mut out = Vec::new();
    push(&mut out, Op::AnnounceHost, 0, &host("host-a", "10.0.0.1").encode_to_vec());
    push(&mut out, Op::AnnounceHost, 0, &host("host-b", "10.0.0.2").encode_to_vec());
    let register = || {
        Request::Register(spb::RegisterPeerRequest {
            download: Some(pb::Download { url: URL.into(), ..Default::default() }),
            ..Default::default()
        })
    };
    let mut a = Peer { out: &mut out, stream: 0, host: "host-a", peer: "peer-a" };
    a.send(register());
    a.send(Request::DownloadPeerBackToSourceStarted(spb::DownloadPeerBackToSourceStartedRequest {
        description: "told to".into(),
    }));
    for n in 0..3 {
        a.send(Request::DownloadPieceBackToSourceFinished(spb::DownloadPieceBackToSourceFinishedRequest {
            piece: Some(piece(n)),
            content_length: Some(LEN),
            piece_length: PIECE,
        }));
    }
    let mut b = Peer { out: &mut out, stream: 1, host: "host-b", peer: "peer-b" };
    b.send(register());
    b.send(Request::DownloadPeerStarted(spb::DownloadPeerStartedRequest {}));
    b.send(Request::DownloadPieceFinished(spb::DownloadPieceFinishedRequest {
        piece: Some(piece(0)),
        parent_peer_id: "peer-a".into(),
    }));
    b.send(Request::DownloadPieceFailed(spb::DownloadPieceFailedRequest {
        piece_number: 1,
        parent_peer_id: "peer-a".into(),
        digest_mismatch: true,
        ..Default::default()
    }));
    b.send(Request::ReschedulePeer(spb::ReschedulePeerRequest {
        bad_parent_peer_ids: vec!["peer-a".into()],
        description: "parent lied".into(),
    }));
    let mut a = Peer { out: &mut out, stream: 0, host: "host-a", peer: "peer-a" };
    a.send(Request::DownloadPeerBackToSourceFinished(spb::DownloadPeerBackToSourceFinishedRequest {
        content_length: LEN,
        piece_count: 3,
        ..Default::default()
    }));
    let mut b = Peer { out: &mut out, stream: 1, host: "host-b", peer: "peer-b" };
    b.send(Request::DownloadPeerFailed(spb::DownloadPeerFailedRequest { description: "gave up".into() }));
    let task_id = TaskId::for_download(URL, None, "", "").expect("a URL").to_string();
    let stat_peer = spb::StatPeerRequest { task_id: task_id.clone(), peer_id: "peer-a".into() };
    push(&mut out, Op::StatPeer, 0, &stat_peer.encode_to_vec());
    push(&mut out, Op::StatTask, 0, &spb::StatTaskRequest { task_id: task_id.clone() }.encode_to_vec());
    let leave = spb::LeavePeerRequest { task_id, peer_id: "peer-a".into() };
    push(&mut out, Op::LeavePeer, 0, &leave.encode_to_vec());
    push(&mut out, Op::LeaveHost, 0, &spb::LeaveHostRequest { host_id: "host-b".into() }.encode_to_vec());
    push(&mut out, Op::Close, 1, &[]);
    push(&mut out, Op::Collect, 0, &3600u64.to_le_bytes());
    out
}

/// A member certificate as a peer presents it.
fn certificate() -> Vec<u8> {
    let ca = testkit::pki::TestCa::new();
    let identity = Identity::new(Role::Peer, 1, "node-1.example").expect("an identity");
    let (pem, _) = ca.issue(&identity);
    let certs = darter_common::tls::certificate::certs_from_pem(pem.as_bytes()).expect("a certificate");
    certs[0].to_vec()
}

/// A grant a scheduler signed, as `piece_grant` reads its binary input:
/// the wire form after the version byte (the target puts it back).
fn grant() -> Vec<u8> {
    let ca = testkit::pki::TestCa::new();
    let identity = Identity::new(Role::Scheduler, 1, "scheduler").expect("an identity");
    let Transport::Mtls(credentials) = ca.transport(&identity) else { unreachable!("a kit CA gives TLS") };
    let grant = Issuer::new(credentials, DEFAULT_TTL).issue("task", "parent-host", "child-host").expect("a grant");
    hex::decode(grant).expect("hex")[1..].to_vec()
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let dir = root.join("scheduler_stream");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("download.bin"), download())?;
    std::fs::write(dir.join("certificate.der"), certificate())?;
    println!("wrote {}", dir.display());
    let dir = root.join("piece_grant");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("signed.bin"), grant())?;
    println!("wrote {}", dir.display());
    Ok(())
}
