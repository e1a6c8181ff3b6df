//! Link calibration: every shaped link driven at once (the origin's upload,
//! each peer's upload and download), so the bound is computed from the rates
//! the links really give under load, not from their nominal settings.
//!
//! Flows: origin -> hub (U), peer -> hub (u), hub -> peer (d), all at the
//! same time, each a TCP stream written as fast as it goes; the receiver
//! counts the bytes that arrive after a warm-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::bound::median;
use super::netns::{Node, Topology};

/// First port the calibration listens on (one per flow).
const BASE_PORT: u16 = 7600;

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
}

/// Drives every link for `warmup + measure` and reports the rates seen
/// during `measure`.
pub async fn calibrate(t: &Topology, warmup: Duration, measure: Duration) -> anyhow::Result<Calibration> {
    let mut flows: Vec<(&Node, &Node)> = vec![(&t.origin, &t.hub)];
    for p in &t.peers {
        flows.push((p, &t.hub));
        flows.push((&t.hub, p));
    }
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
        let received = Arc::new(AtomicU64::new(0));
        counters.push(Arc::clone(&received));
        let stop_w = Arc::clone(&stop);
        tasks.spawn(async move {
            let buf = vec![0u8; 256 * 1024];
            while !stop_w.load(Ordering::Relaxed) {
                if stream.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
        let stop_r = Arc::clone(&stop);
        tasks.spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
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
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    let seconds = started.elapsed().as_secs_f64();
    let rates: Vec<f64> =
        counters.iter().zip(before).map(|(c, b)| (c.load(Ordering::Relaxed) - b) as f64 * 8.0 / seconds).collect();
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    let ups: Vec<f64> = rates.iter().skip(1).step_by(2).copied().collect();
    let downs: Vec<f64> = rates.iter().skip(2).step_by(2).copied().collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Calibration {
        origin_up_bps: rates[0],
        peer_up_bps: median(&ups).unwrap_or(f64::NAN),
        peer_up_min_bps: min(&ups),
        peer_down_bps: median(&downs).unwrap_or(f64::NAN),
        peer_down_min_bps: min(&downs),
        seconds,
    })
}
