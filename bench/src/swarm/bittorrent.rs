//! The BitTorrent baseline of the swarm benchmark: the same file, the same
//! nodes and links, distributed by a plain BitTorrent swarm instead of Darter.
//!
//! One run ([`run`]) is:
//! 1. `mktorrent` makes a private torrent (no DHT, no PEX) with Darter's
//!    piece length, announcing to the tracker node.
//! 2. `opentracker` serves it on the tracker node (the Debian build is a
//!    closed tracker: the info hash goes into a whitelist file it reads).
//! 3. A seeder `aria2c` on the seeder node verifies the whole file and
//!    announces itself as complete; the harness waits for that at the tracker.
//! 4. Every leecher's `aria2c` is started at once: the common start is the
//!    instant before the first is spawned. A leecher's completion is the
//!    wall clock its `--on-bt-download-complete` hook writes into a marker
//!    file (called when the last piece is verified, before seeding),
//!    relative to the common start (the harness polls every 20 ms).
//! 5. Finished leechers keep seeding until every leecher is done or the
//!    timeout passes (a fair swarm: Darter's peers keep uploading too); then
//!    every process is killed and each finished file is hashed.
//!
//! Every leecher announces every second (`--bt-tracker-interval=1`), so
//! leechers that start together learn of each other within a second, not
//! only of the seeder. Each process binds its node's address
//! (`--interface`) and a port of its own, so the run works in namespaces and
//! on the loopback fallback alike.
//!
//! Scale limit: the kernel's neighbour (ARP) table limit
//! (`net.ipv4.neigh.default.gc_thresh3`, 1024 by default) is shared by all
//! namespaces, and a full mesh of n nodes needs about n² entries: past ~30
//! peers some leechers cannot resolve others and stall. A run with stalled
//! leechers says so in [`BtOutcome::errors`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

use super::netns::Node;
use testkit::process::ChildGuard;

/// The Debian packages the baseline needs: aria2, mktorrent, opentracker.
pub const TOOLS: &[(&str, &str)] = &[("aria2c", "aria2"), ("mktorrent", "mktorrent"), ("opentracker", "opentracker")];

/// The tracker's TCP port on the tracker node: not opentracker's default
/// 6969, which the Debian package's service may hold on every address of
/// the root namespace (where the hub is).
const TRACKER_PORT: u16 = 16969;
/// The seeder's BitTorrent port; leecher `i` listens on `LEECHER_PORT + i`.
const SEEDER_PORT: u16 = 6880;
const LEECHER_PORT: u16 = 6881;
/// How long the tracker may take to answer and the seeder to verify the
/// file and announce it (before the common start, off the clock).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the harness looks for completion markers and dead leechers.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The environment variable telling the completion hook where its marker goes.
const MARKER_ENV: &str = "DBENCH_BT_MARKER";
/// The completion hook: writes the wall clock (ns since the epoch) into the
/// leecher's marker file, atomically (the harness polls for the file).
const HOOK_SCRIPT: &str = "#!/bin/sh\n\
# aria2c --on-bt-download-complete: the download is complete and verified (seeding follows).\n\
date +%s%N > \"$DBENCH_BT_MARKER.tmp\" && mv \"$DBENCH_BT_MARKER.tmp\" \"$DBENCH_BT_MARKER\"\n";

/// Whether the baseline can run here; `Err` says what to install.
pub fn ready() -> Result<(), String> {
    let missing: Vec<&(&str, &str)> = TOOLS.iter().filter(|(tool, _)| testkit::tool::find(tool).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
    let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    Err(format!("{} not installed (apt-get install {})", tools.join(", "), packages.join(" ")))
}

/// One BitTorrent swarm run.
#[derive(Debug)]
pub struct BtRun<'a> {
    /// Where the tracker runs (the hub, root namespace).
    pub tracker: &'a Node,
    /// Where the seeder runs, holding the whole file (the origin node).
    pub seeder: &'a Node,
    /// The leechers, one aria2c each.
    pub peers: &'a [Node],
    /// The content (the seeder serves this file).
    pub file: &'a Path,
    /// Piece length in bytes (a power of two, >= 32 KiB), the same as Darter uses.
    pub piece_length: u64,
    /// Scratch directory (torrent, per-peer download dirs, logs); the caller removes it.
    pub dir: &'a Path,
    /// Give up on peers not done after this long.
    pub timeout: Duration,
}

/// What a [`run`] measured.
#[derive(Clone, Debug, Default)]
pub struct BtOutcome {
    /// Per leecher (same order as `peers`): time from the common start until
    /// its download was complete (`None`: not done by the timeout or failed).
    pub completion: Vec<Option<Duration>>,
    /// Per leecher: the sha256 hex of its downloaded file, when it finished.
    pub sha256: Vec<Option<String>>,
    /// Per leecher: the PID of its aria2c while it ran (for CPU/RSS sampling
    /// by the caller), collected at spawn.
    pub pids: Vec<u32>,
    /// Human-readable problems (a peer failed, the log said X).
    pub errors: Vec<String>,
}

/// A running leecher.
struct Leecher {
    name: String,
    guard: ChildGuard,
    marker: PathBuf,
    download: PathBuf,
    log: PathBuf,
    done: Option<Duration>,
    failed: bool,
}

/// Runs one swarm: mktorrent (same piece length, private, announcing to the
/// tracker), opentracker on the tracker node, the verified seeder on the
/// seeder node, then every leecher at once (the common start). Waits until
/// each leecher has completed or `run.timeout` has passed since the common
/// start, with completed leechers seeding meanwhile, then stops every
/// process (also on error: each is killed on drop) and hashes the finished
/// files.
///
/// `on_start` is called with the leechers' PIDs right after all were
/// spawned, so the caller can sample them while this is awaited.
pub async fn run(run: &BtRun<'_>, on_start: impl FnOnce(&[u32]) + Send) -> anyhow::Result<BtOutcome> {
    ensure!(!run.peers.is_empty(), "no leechers");
    ensure!(
        run.piece_length.is_power_of_two() && run.piece_length >= 32 << 10,
        "piece length {} is not a power of two >= 32 KiB",
        run.piece_length
    );
    let file = std::fs::canonicalize(run.file).with_context(|| format!("resolve {}", run.file.display()))?;
    let name = file.file_name().context("the content has no file name")?.to_owned();
    std::fs::create_dir_all(run.dir).with_context(|| format!("create {}", run.dir.display()))?;
    let dir = std::fs::canonicalize(run.dir).with_context(|| format!("resolve {}", run.dir.display()))?;

    let expected = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || testkit::data::sha256_file(&file))
            .await?
            .with_context(|| format!("hash {}", run.file.display()))?
    };

    // The torrent and its info hash.
    let tracker_addr = SocketAddr::new(run.tracker.ip, TRACKER_PORT);
    let torrent = dir.join("content.torrent");
    remove_if_exists(&torrent)?;
    let log2 = run.piece_length.trailing_zeros();
    let mut mktorrent = tokio::process::Command::new("mktorrent");
    mktorrent
        .arg("--private")
        .arg(format!("--piece-length={log2}"))
        .arg(format!("--announce=http://{tracker_addr}/announce"))
        .arg("--output")
        .arg(&torrent)
        .arg(&file);
    testkit::tool::run(&mut mktorrent, SETUP_TIMEOUT).await?;
    let info_hash = info_hash(&torrent).await?;

    // The tracker.
    let mut tracker = start_tracker(run.tracker, tracker_addr, &dir, &info_hash)?;
    let tracker_log = dir.join("tracker.log");
    let probe = std::sync::Arc::new(probe_tracker(run.tracker, tracker_addr, &info_hash));
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let check = probe.clone();
        if tokio::task::spawn_blocking(move || check()).await? {
            break;
        }
        if tracker.has_exited() {
            bail!("opentracker exited on {tracker_addr}:\n{}", tail(&tracker_log, 20));
        }
        if Instant::now() >= deadline {
            bail!("opentracker did not accept the torrent within {SETUP_TIMEOUT:?}:\n{}", tail(&tracker_log, 20));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    // The seeder, verified and announced before the clock starts.
    let seed_dir = dir.join("seed");
    std::fs::create_dir_all(&seed_dir).with_context(|| format!("create {}", seed_dir.display()))?;
    let link = seed_dir.join(&name);
    remove_if_exists(&link)?;
    std::os::unix::fs::symlink(&file, &link).with_context(|| format!("link {}", link.display()))?;
    let max_peers = (run.peers.len() + 16).max(128);
    let seeder_log = dir.join("seeder.log");
    let mut seeder = spawn_aria2c(
        run.seeder,
        SEEDER_PORT,
        max_peers,
        &seed_dir,
        &seeder_log,
        &dir.join("seeder.out"),
        &torrent,
        &["--check-integrity=true", "--bt-seed-unverified=false"],
        None,
    )?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        if seeders(run.tracker, tracker_addr, &info_hash).await? >= 1 {
            break;
        }
        if seeder.has_exited() {
            bail!("the seeder aria2c exited before seeding:\n{}", tail(&seeder_log, 20));
        }
        if Instant::now() >= deadline {
            bail!("the seeder did not announce within {SETUP_TIMEOUT:?}:\n{}", tail(&seeder_log, 20));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    // The leechers, all at once.
    let hook = dir.join("bt-complete.sh");
    std::fs::write(&hook, HOOK_SCRIPT).with_context(|| format!("write {}", hook.display()))?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", hook.display()))?;
    let hook_arg = format!("--on-bt-download-complete={}", hook.display());
    let mut prepared = Vec::with_capacity(run.peers.len());
    for (i, node) in run.peers.iter().enumerate() {
        let peer_dir = dir.join(format!("peer-{i}"));
        if peer_dir.exists() {
            std::fs::remove_dir_all(&peer_dir).with_context(|| format!("clear {}", peer_dir.display()))?;
        }
        std::fs::create_dir_all(&peer_dir).with_context(|| format!("create {}", peer_dir.display()))?;
        let marker = dir.join(format!("peer-{i}.done"));
        remove_if_exists(&marker)?;
        prepared.push((node, peer_dir, marker));
    }
    let start_wall = SystemTime::now();
    let start = Instant::now();
    let mut leechers = Vec::with_capacity(run.peers.len());
    for (i, (node, peer_dir, marker)) in prepared.into_iter().enumerate() {
        let port = u16::try_from(i).ok().and_then(|i| LEECHER_PORT.checked_add(i)).context("too many leechers")?;
        let log = dir.join(format!("peer-{i}.log"));
        let guard = spawn_aria2c(
            node,
            port,
            max_peers,
            &peer_dir,
            &log,
            &dir.join(format!("peer-{i}.out")),
            &torrent,
            &[&hook_arg],
            Some(&marker),
        )?;
        leechers.push(Leecher {
            name: node.name.clone(),
            guard,
            marker,
            download: peer_dir.join(&name),
            log,
            done: None,
            failed: false,
        });
    }
    let pids: Vec<u32> = leechers.iter().map(|l| l.guard.id()).collect();
    on_start(&pids);

    // Wait for every leecher (finished ones keep seeding meanwhile).
    let deadline = start + run.timeout;
    let mut errors = Vec::new();
    loop {
        for l in leechers.iter_mut().filter(|l| l.done.is_none() && !l.failed) {
            if let Ok(text) = std::fs::read_to_string(&l.marker) {
                l.done = Some(completion(&text, start_wall).unwrap_or_else(|| start.elapsed()));
            } else if l.guard.has_exited() {
                l.failed = true;
                errors.push(format!("{}: aria2c exited before completing:\n{}", l.name, tail(&l.log, 10)));
            }
        }
        if leechers.iter().all(|l| l.done.is_some() || l.failed) {
            break;
        }
        if Instant::now() >= deadline {
            for l in leechers.iter().filter(|l| l.done.is_none() && !l.failed) {
                errors.push(format!("{}: not complete after {:?}:\n{}", l.name, run.timeout, tail(&l.log, 10)));
            }
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    // In namespaces, a leecher that cannot reach its peers is most often the
    // kernel's neighbour table being full: say so.
    if leechers.iter().any(|l| l.done.is_none())
        && run.peers.iter().any(|p| p.ns.is_some())
        && let Some(hint) = neighbour_table_hint(run.peers.len() + 2)
    {
        errors.push(hint);
    }

    // Stop everything, then check
    // the files: aria2c runs with `--disk-cache=0`, so every verified piece
    // was written before its hook ran.
    for l in &mut leechers {
        l.guard.kill();
    }
    seeder.kill();
    tracker.kill();
    let hashes = futures::future::join_all(leechers.iter().map(|l| {
        let (done, path) = (l.done.is_some(), l.download.clone());
        async move {
            if !done {
                return None;
            }
            Some(tokio::task::spawn_blocking(move || testkit::data::sha256_file(&path)).await)
        }
    }))
    .await;
    let mut sha256 = Vec::with_capacity(leechers.len());
    for (l, hash) in leechers.iter().zip(hashes) {
        sha256.push(match hash {
            None => None,
            Some(Ok(Ok(hash))) => {
                if hash != expected {
                    errors.push(format!("{}: downloaded sha256 {hash}, the content's is {expected}", l.name));
                }
                Some(hash)
            }
            Some(Ok(Err(e))) => {
                errors.push(format!("{}: hash {}: {e}", l.name, l.download.display()));
                None
            }
            Some(Err(e)) => {
                errors.push(format!("{}: hashing task failed: {e}", l.name));
                None
            }
        });
    }
    Ok(BtOutcome { completion: leechers.iter().map(|l| l.done).collect(), sha256, pids, errors })
}

/// The time from `start` to the wall clock (ns since the epoch) a
/// completion hook wrote; `None` when the marker cannot be read as one.
fn completion(marker: &str, start: SystemTime) -> Option<Duration> {
    let ns: u64 = marker.trim().parse().ok()?;
    let at = UNIX_EPOCH + Duration::from_nanos(ns);
    Some(at.duration_since(start).unwrap_or_default())
}

/// Spawns an `aria2c` for `torrent` on `node`, listening on `port` of the
/// node's address, downloading into (or seeding from) `download_dir`.
#[allow(clippy::too_many_arguments)]
fn spawn_aria2c(
    node: &Node,
    port: u16,
    max_peers: usize,
    download_dir: &Path,
    log: &Path,
    out: &Path,
    torrent: &Path,
    extra: &[&str],
    marker: Option<&Path>,
) -> anyhow::Result<ChildGuard> {
    let out_file = std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
    let err_file = out_file.try_clone().with_context(|| format!("reopen {}", out.display()))?;
    let mut cmd = node.std_command("aria2c");
    cmd.args([
        "--no-conf=true",
        // Only the tracker finds peers: no DHT, local discovery or exchange.
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        // Announce every second: peers starting together still meet.
        "--bt-tracker-interval=1",
        "--bt-tracker-connect-timeout=5",
        "--bt-tracker-timeout=10",
        // Pooled tracker connections are never reused (the tracker closes
        // them) and would pile up, one per announce.
        "--enable-http-keep-alive=false",
        // Seed without end: the harness kills it.
        "--seed-ratio=0.0",
        "--max-overall-upload-limit=0",
        "--max-upload-limit=0",
        "--max-overall-download-limit=0",
        "--max-download-limit=0",
        "--file-allocation=none",
        // Every verified piece is written at once (the hook then means the file is whole).
        "--disk-cache=0",
        "--summary-interval=0",
        "--show-console-readout=false",
        "--enable-color=false",
        "--download-result=hide",
        "--console-log-level=warn",
        "--log-level=notice",
    ])
    .arg(format!("--interface={}", node.ip))
    .arg(format!("--listen-port={port}"))
    .arg(format!("--bt-max-peers={max_peers}"))
    .arg(format!("--stop-with-process={}", std::process::id()))
    .arg(format!("--dir={}", download_dir.display()))
    .arg(format!("--log={}", log.display()))
    .args(extra)
    .arg(torrent)
    .stdin(Stdio::null())
    .stdout(out_file)
    .stderr(err_file);
    if let Some(marker) = marker {
        cmd.env(MARKER_ENV, marker);
    }
    let child = cmd.spawn().with_context(|| format!("start aria2c on {}", node.name))?;
    Ok(ChildGuard::new(child))
}

/// Starts opentracker on `addr` (TCP only) with a whitelist holding
/// `info_hash`. As root it chroots into its own directory and drops to
/// `nobody` (it refuses to keep root), so the directory and whitelist are
/// world-readable and the whitelist is named from inside the chroot.
fn start_tracker(node: &Node, addr: SocketAddr, dir: &Path, info_hash: &str) -> anyhow::Result<ChildGuard> {
    let root = dir.join("tracker");
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", root.display()))?;
    let whitelist = root.join("whitelist.txt");
    std::fs::write(&whitelist, format!("{info_hash}\n")).with_context(|| format!("write {}", whitelist.display()))?;
    std::fs::set_permissions(&whitelist, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", whitelist.display()))?;
    let config = if is_root() {
        format!("tracker.rootdir {}\ntracker.user nobody\naccess.whitelist /whitelist.txt\n", root.display())
    } else {
        format!("access.whitelist {}\n", whitelist.display())
    };
    let config_path = dir.join("opentracker.conf");
    std::fs::write(&config_path, config).with_context(|| format!("write {}", config_path.display()))?;
    let log_path = dir.join("tracker.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let log_err = log.try_clone().with_context(|| format!("reopen {}", log_path.display()))?;
    let child = node
        .std_command("opentracker")
        .arg("-f")
        .arg(&config_path)
        .args(["-i", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("start opentracker on {}", node.name))?;
    Ok(ChildGuard::new(child))
}

/// A blocking check that the tracker answers an announce for `info_hash`
/// without a failure (so the whitelist is loaded); the probe peer is then
/// withdrawn again.
fn probe_tracker(node: &Node, addr: SocketAddr, info_hash: &str) -> impl Fn() -> bool + Send + 'static {
    let node = node.clone();
    let hash = percent_encode_hex(info_hash);
    move || {
        let query = format!("info_hash={hash}&peer_id=-DB0001-harnessprobe&port=1&uploaded=0&downloaded=0&left=1");
        let Ok(body) = http_get(&node, addr, &format!("/announce?{query}&numwant=0")) else { return false };
        if body.windows(7).any(|w| w == b"failure") || !body.windows(8).any(|w| w == b"interval") {
            return false;
        }
        // Withdraw the probe so no one tries to connect to it.
        let _ = http_get(&node, addr, &format!("/announce?{query}&event=stopped&numwant=0"));
        true
    }
}

/// How many complete peers (seeders) the tracker knows for `info_hash`.
async fn seeders(node: &Node, addr: SocketAddr, info_hash: &str) -> anyhow::Result<u64> {
    let node = node.clone();
    let path = format!("/scrape?info_hash={}", percent_encode_hex(info_hash));
    let body = tokio::task::spawn_blocking(move || http_get(&node, addr, &path)).await??;
    let needle = b"8:completei";
    let Some(at) = body.windows(needle.len()).position(|w| w == needle) else { return Ok(0) };
    let digits: String =
        body[at + needle.len()..].iter().take_while(|b| b.is_ascii_digit()).map(|&b| char::from(b)).collect();
    digits.parse().with_context(|| format!("tracker scrape answer {:?}", String::from_utf8_lossy(&body)))
}

/// A plain HTTP/1.0 GET from `node` (blocking); returns the body.
fn http_get(node: &Node, addr: SocketAddr, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut stream = node.connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).with_context(|| format!("read the answer of {addr}"))?;
    let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("malformed HTTP answer from {addr}: {:?}", String::from_utf8_lossy(&response));
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    ensure!(head.starts_with("HTTP/1.") && head.get(9..12) == Some("200"), "{addr} answered {head:?}");
    Ok(response.split_off(head_end + 4))
}

/// The torrent's info hash (lowercase hex), as `aria2c -S` prints it.
async fn info_hash(torrent: &Path) -> anyhow::Result<String> {
    let out = testkit::tool::run(tokio::process::Command::new("aria2c").arg("-S").arg(torrent), SETUP_TIMEOUT).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("Info Hash:"))
        .map(|h| h.trim().to_ascii_lowercase())
        .with_context(|| format!("no info hash in `aria2c -S {}`:\n{text}", torrent.display()))?;
    ensure!(hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "bad info hash {hash:?}");
    Ok(hash)
}

/// `%xx` for every byte of a hex string (a URL-encoded binary info hash).
fn percent_encode_hex(hex: &str) -> String {
    hex.as_bytes().chunks(2).map(|pair| format!("%{}", String::from_utf8_lossy(pair))).collect()
}

/// The last `lines` lines of a log file (or why it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Why leechers may not reach each other: the kernel's neighbour (ARP)
/// table limit `gc_thresh3` counts the entries of every namespace together,
/// and a full mesh of `nodes` nodes on one bridge needs about `nodes²` of
/// them. Past the limit new entries fail ("neighbor table overflow" in the
/// kernel log) and connections to peers not yet resolved hang in SYN-SENT.
fn neighbour_table_hint(nodes: usize) -> Option<String> {
    let path = "/proc/sys/net/ipv4/neigh/default/gc_thresh3";
    let limit: usize = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let needed = nodes * nodes;
    (limit < needed).then(|| {
        format!(
            "{path} is {limit}, below the ~{needed} neighbour entries a full mesh of {nodes} nodes needs: \
             peers past the limit cannot resolve each other (raise gc_thresh1/2/3)"
        )
    })
}

/// Whether we run as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_relative_to_the_start() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(completion("1000250000000\n", start), Some(Duration::from_millis(250)));
        assert_eq!(completion("999000000000", start), Some(Duration::ZERO));
        assert_eq!(completion("garbage", start), None);
    }

    #[test]
    fn info_hash_is_percent_encoded_per_byte() {
        assert_eq!(percent_encode_hex("6d7b04"), "%6d%7b%04");
    }
}
