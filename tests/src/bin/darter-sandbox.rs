//! `darter-sandbox`: a local Darter on loopback, for trying it out.
//!
//! Starts an origin serving a random demo file, starts a dfdaemon, downloads
//! the file with `dfget` twice (the first time from the origin, the second
//! from the daemon's storage), checks both copies, prints where the bytes
//! came from, then keeps running and prints how to use `dfget` against it.
//! The scheduler, seed peer and peers join the sandbox as they are built.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, bail};
use clap::Parser;
use testkit::bench::size::parse_size;
use testkit::dfdaemon::{DaemonOptions, DaemonProcess, sibling_binary};
use testkit::origin::{Behavior, Content, Origin};

/// Run a local Darter on loopback and download through it.
#[derive(Debug, Parser)]
#[command(name = "darter-sandbox")]
struct Cli {
    /// Size of the demo file.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    size: u64,
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
    let dfdaemon = sibling_binary("dfdaemon")?;
    let dfget = sibling_binary("dfget")?;
    let tmp = tempfile::Builder::new().prefix("darter-sandbox-").tempdir()?;
    let dir = cli.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;

    let origin = Origin::start().await;
    let demo = dir.join("demo.bin");
    let (path, size) = (demo.clone(), cli.size);
    let digest = tokio::task::spawn_blocking(move || testkit::write_random_file(&path, size, rand_seed())).await??;
    origin.add("/demo.bin", Content::File(demo), Behavior::default());
    let url = origin.url("/demo.bin");
    println!("origin      {url} ({} bytes, sha256:{digest})", cli.size);

    let daemon = DaemonProcess::start(DaemonOptions::new(&dfdaemon, dir.join("peer-1"))).await?;
    println!("dfdaemon    socket {} (log {})", daemon.socket.display(), daemon.log_path.display());

    for (round, label) in [(1, "cold: from the origin"), (2, "warm: from local storage")] {
        let out = dir.join(format!("download-{round}.bin"));
        let status = tokio::process::Command::new(&dfget)
            .arg(&url)
            .arg("-O")
            .arg(&out)
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["--no-progress", "--verbose", "--digest", &format!("sha256:{digest}")])
            .stderr(Stdio::piped())
            .output()
            .await
            .context("run dfget")?;
        let said = String::from_utf8_lossy(&status.stderr);
        if !status.status.success() {
            bail!("dfget failed ({}): {said}\n--- dfdaemon log ---\n{}", status.status, daemon.log_tail(20));
        }
        let got = testkit::sha256_file(&out)?;
        if got != digest {
            bail!("download {round} has sha256 {got}, expected {digest}");
        }
        println!("download {round}  {label}: {}", said.trim().trim_start_matches("downloaded "));
    }
    println!("origin sent {} bytes in total for 2 downloads of {} bytes", origin.total_body_bytes(), cli.size);

    if cli.exit {
        return Ok(());
    }
    println!();
    println!("The sandbox keeps running; in another shell try:");
    println!("  {} {url} -O /tmp/demo.bin --socket {}", dfget.display(), daemon.socket.display());
    println!(
        "  {} https://example.invalid/any-file -O /tmp/f --socket {}   # any http(s) URL your machine reaches",
        dfget.display(),
        daemon.socket.display()
    );
    println!("Ctrl-C stops it and removes its state.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}
