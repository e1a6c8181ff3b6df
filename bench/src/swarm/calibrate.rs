//! Link calibration: the shaped links driven under the load a swarm puts on
//! them (see [`calibrate`]), so the bound is computed from the rates the
//! links really give, not from their nominal settings.
//!
//! Calibration also measures the *socket floor*: the CPU this process spends
//! per GiB that crosses the links, both ends of every flow included (one
//! send and one receive per byte, 256 KiB per system call and per receiver
//! wake-up, as the daemons' piece transfers; nothing else).
//! A peer that uploads what it downloads cannot spend less on these links;
//! on a VM much of it is the kernel's per-packet work on veth and tbf.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::bound::median;
use super::netns::{Node, Topology};
use super::usage::cpu_seconds;
use darter_common::sockopt::{set_recv_low_water, set_send_buffer};

/// First port the calibration listens on (one per flow).
const BASE_PORT: u16 = 7600;
/// Bytes per write and per receiver wake-up.
const WAKE: usize = 256 * 1024;

/// Measured rates in bits per second.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// The origin's upload U.
    pub origin_up_bps: f64,
    /// Median peer upload u.
    pub peer_up_bps: f64,
    /// Slowest peer upload.
    pub peer_up_min_bps: f64,
    /// Median peer download d.
    pub peer_down_bps: f64,
    /// Slowest peer download.
    pub peer_down_min_bps: f64,
    /// Seconds measured (after the warm-up).
    pub seconds: f64,
    /// CPU seconds (user + system) per GiB received, both ends of every flow
    /// included; `None` where nothing was measured (loopback, nominal rates).
    pub socket_floor_cpu_s_per_gib: Option<f64>,
}

/// Calibrates the origin's link and the first `peers` peers' links in two
/// phases of `warmup + measure` each, loaded as a swarm loads them:
///
/// 1. uploads: every peer sends to the next one in a ring (one peer alone
///    sends to the hub) while the origin sends to the hub: u and U, with
///    each flow crossing two shaped links as a piece does;
/// 2. downloads: the hub sends to every peer: d.
///
/// Driving every upload and download at once instead would move half
/// again the bytes a swarm moves and, on a small machine, measure the CPU
/// rather than the links.
pub async fn calibrate(t: &Topology, peers: usize, warmup: Duration, measure: Duration) -> anyhow::Result<Calibration> {
    let peers: Vec<&Node> = t.peers.iter().take(peers).collect();
    let mut uploads: Vec<(&Node, &Node)> = vec![(&t.origin, &t.hub)];
    for (i, p) in peers.iter().enumerate() {
        let next = if peers.len() > 1 { peers[(i + 1) % peers.len()] } else { &t.hub };
        uploads.push((p, next));
    }
    let downloads: Vec<(&Node, &Node)> = peers.iter().map(|p| (&t.hub, *p)).collect();
    let up = drive(&uploads, warmup, measure).await.context("upload phase")?;
    let down = drive(&downloads, warmup, measure).await.context("download phase")?;
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (cpu, received) = (up.cpu_seconds + down.cpu_seconds, up.received_bytes + down.received_bytes);
    Ok(Calibration {
        origin_up_bps: up.rates[0],
        peer_up_bps: median(&up.rates[1..]).unwrap_or(f64::NAN),
        peer_up_min_bps: min(&up.rates[1..]),
        peer_down_bps: median(&down.rates).unwrap_or(f64::NAN),
        peer_down_min_bps: min(&down.rates),
        seconds: up.seconds + down.seconds,
        socket_floor_cpu_s_per_gib: (received > 0).then(|| cpu / (received as f64 / (1u64 << 30) as f64)),
    })
}

/// What one phase measured.
struct Phase {
    /// Bits per second of each flow, in the order given.
    rates: Vec<f64>,
    seconds: f64,
    cpu_seconds: f64,
    received_bytes: u64,
}

/// Drives `flows` (sender, receiver) at once, each a TCP stream written as
/// fast as it goes, and measures after `warmup`.
async fn drive(flows: &[(&Node, &Node)], warmup: Duration, measure: Duration) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut counters = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (from, to)) in flows.iter().enumerate() {
        let port = BASE_PORT + i as u16;
        let listener = to.bind(port).with_context(|| format!("listen on {} port {port}", to.name))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = SocketAddr::new(to.ip, port);
        let sender = Node::clone(from);
        let stream = tokio::task::spawn_blocking(move || sender.connect(addr)).await??;
        stream.set_nonblocking(true)?;
        let mut stream = tokio::net::TcpStream::from_std(stream)?;
        let (mut incoming, _) = listener.accept().await?;
        // As the daemons move pieces: big writes, one wake-up per WAKE bytes.
        set_send_buffer(&stream, 2 << 20)?;
        set_recv_low_water(&incoming, WAKE)?;
        let received = Arc::new(AtomicU64::new(0));
        counters.push(Arc::clone(&received));
        let stop_w = Arc::clone(&stop);
        tasks.spawn(async move {
            let buf = vec![0u8; WAKE];
            while !stop_w.load(Ordering::Relaxed) {
                if stream.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
        let stop_r = Arc::clone(&stop);
        tasks.spawn(async move {
            let mut buf = vec![0u8; WAKE];
            while !stop_r.load(Ordering::Relaxed) {
                match incoming.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    tokio::time::sleep(warmup).await;
    let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    let got: Vec<u64> = counters.iter().zip(before).map(|(c, b)| c.load(Ordering::Relaxed) - b).collect();
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(Phase {
        rates: got.iter().map(|&b| b as f64 * 8.0 / seconds).collect(),
        seconds,
        cpu_seconds,
        received_bytes: got.iter().sum(),
    })
}

/// User + system CPU seconds of this process so far.
fn process_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}
