//! `darter-sandbox`: a local Darter cluster on loopback, for trying it out.
//!
//! Starts an origin serving a random demo file, a manager (SQLite in the
//! sandbox's directory), a scheduler and a seed peer that register with it,
//! and `--peers` peers that find the scheduler through the manager only (all
//! real processes). It prints the manager's console URL and the root
//! credentials it set, downloads the file on every peer at once with `dfget`,
//! checks every copy, and prints per peer the time and where the bytes came
//! from (origin, other peers, local disk) and how many bytes the origin served
//! in all. Then it stays up and prints how to use `dfget` against it, until
//! Ctrl-C.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, bail};
use clap::Parser;
use testkit::cluster::{Cluster, ClusterOptions};
use testkit::dfdaemon::sibling_binary;
use testkit::manager::{ROOT_USER, random_password};
use testkit::origin::{Behavior, Content, Origin};
use testkit::size::parse_size;

/// Run a local Darter cluster on loopback and download through its swarm.
#[derive(Debug, Parser)]
#[command(name = "darter-sandbox")]
struct Cli {
    /// Size of the demo file.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// Number of peers (besides the seed peer).
    #[arg(long, default_value_t = 4)]
    peers: usize,
    /// Directory for the sandbox's state [default: a new temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Exit after the demo downloads instead of staying up.
    #[arg(long)]
    exit: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dfget = sibling_binary("dfget")?;
    let bin_dir = dfget.parent().context("binary directory")?.to_path_buf();
    sibling_binary("dfdaemon")?;
    sibling_binary("scheduler")?;
    sibling_binary("manager")?;
    let tmp = tempfile::Builder::new().prefix("darter-sandbox-").tempdir()?;
    let dir = cli.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;

    let origin = Origin::start().await;
    let demo = dir.join("demo.bin");
    let (path, size) = (demo.clone(), cli.size);
    let digest = tokio::task::spawn_blocking(move || testkit::write_random_file(&path, size, seed())).await??;
    origin.add("/demo.bin", Content::File(demo), Behavior::default());
    let url = origin.url("/demo.bin");
    println!("origin     {url} ({} bytes, sha256:{digest})", cli.size);

    let mut options = ClusterOptions::new(&dir, &bin_dir, cli.peers).with_manager();
    options.root_password = random_password();
    let cluster = Cluster::start(&options).await?;
    if let Some(m) = &cluster.manager {
        println!("manager    grpc {} (log {})", m.grpc_addr, m.log_path.display());
        println!("console    {} (user {ROOT_USER}, password {})", m.console_url(), m.root_password);
        if let testkit::cluster::Trust::Joins { peer, .. } = &cluster.trust {
            println!("trust      mutual TLS; members enrolled with join tokens (CA {})", peer.ca_cert_hash);
        }
    }
    println!("scheduler  {} (log {})", cluster.scheduler.addr, cluster.scheduler.log_path.display());
    if let Some(seed) = &cluster.seed {
        println!("seed peer  socket {}", seed.socket.display());
    }
    for (i, p) in cluster.peers.iter().enumerate() {
        println!("peer {i:<5} socket {}", p.socket.display());
    }

    for (round, label) in [(1, "every peer at once, cold"), (2, "again, warm")] {
        println!("\nround {round}: {label}");
        let downloads = cluster.peers.iter().enumerate().map(|(i, p)| {
            let out = dir.join(format!("peer-{i}-download-{round}.bin"));
            let (dfget, url, socket) = (dfget.clone(), url.clone(), p.socket.clone());
            async move {
                let o = tokio::process::Command::new(&dfget)
                    .arg(&url)
                    .arg("-O")
                    .arg(&out)
                    .arg("--socket")
                    .arg(&socket)
                    .args(["--no-progress", "--verbose"])
                    .stderr(Stdio::piped())
                    .output()
                    .await;
                (i, out, o)
            }
        });
        for (i, out, o) in futures::future::join_all(downloads).await {
            let o = o.context("run dfget")?;
            let said = String::from_utf8_lossy(&o.stderr);
            if !o.status.success() {
                bail!("dfget on peer {i} failed ({}): {said}", o.status);
            }
            if testkit::sha256_file(&out)? != digest {
                bail!("peer {i}'s copy does not match sha256:{digest}");
            }
            let summary = said.trim().split_once(" in ").map_or(said.trim(), |(_, rest)| rest);
            println!("  peer {i}: {summary}");
        }
        let sent = origin.total_body_bytes();
        println!(
            "  origin has sent {sent} bytes so far: {:.2} copies of the file",
            sent as f64 / cli.size.max(1) as f64
        );
    }

    if cli.exit {
        return Ok(());
    }
    println!("\nThe cluster keeps running; in another shell try:");
    let socket = &cluster.peers[0].socket;
    println!("  {} {url} -O /tmp/demo.bin --socket {}", dfget.display(), socket.display());
    println!("  {} <any http(s) URL> -O /tmp/file --socket {}", dfget.display(), socket.display());
    println!("Ctrl-C stops it and removes its state.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}
