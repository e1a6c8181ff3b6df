//! The benchmark's network: one namespace per peer and one for the origin,
//! joined by a bridge in the root namespace, every link shaped with `tc tbf`.
//!
//! ```text
//!   root namespace: bridge dbench-br 10.213.0.1 (the hub: manager, scheduler, tracker)
//!      |-- dbench-ob  ==veth==  dbench-o  [ns dbench-origin] 10.213.0.2   egress tbf U
//!      |-- dbench-p0b ==veth==  dbench-p0 [ns dbench-p0]     10.213.1.1   egress tbf u
//!      |   (egress of dbench-p0b: tbf d, the peer's download)
//!      ...
//! ```
//!
//! A node's upload is shaped on its own end of the veth (its egress), its
//! download on the bridge end (the bridge's egress towards it). Processes run
//! in a node with [`Node::command`] (`ip netns exec`); the harness's own
//! sockets are made inside a node with [`Node::bind`] / [`Node::connect`]
//! (a thread that enters the namespace creates them; a socket stays in the
//! namespace it was made in).
//!
//! Where namespaces cannot be made (no root, no `ip`), [`Topology::create`]
//! falls back to loopback: every node gets its own `127.213.x.y` address,
//! nothing is shaped by the kernel, and [`Topology::mode`] says so.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Stdio;

use anyhow::{Context, bail};

/// Prefix of every namespace and interface the benchmark makes; leftovers of
/// an interrupted run are found by it and removed.
pub const PREFIX: &str = "dbench";
const BRIDGE: &str = "dbench-br";
const ORIGIN_NS: &str = "dbench-origin";
/// Most peers the address plan holds.
pub const MAX_PEERS: usize = 250;

/// Link rates in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LinkRates {
    /// The origin's upload, U.
    pub origin_up_bps: u64,
    /// Each peer's upload, u.
    pub peer_up_bps: u64,
    /// Each peer's download, d.
    pub peer_down_bps: u64,
}

/// How the network was built.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// Namespaces, a bridge and `tc tbf` on every link.
    Namespaces,
    /// Loopback addresses; rates are only what the processes enforce themselves.
    Loopback {
        /// Why namespaces could not be made.
        reason: String,
    },
}

/// A host of the benchmark: the hub (root namespace), the origin or a peer.
#[derive(Clone, Debug)]
pub struct Node {
    /// `hub`, `origin`, `peer-0`, ...
    pub name: String,
    /// Its network namespace (`None`: the root namespace).
    pub ns: Option<String>,
    /// Its address (what its services bind and advertise).
    pub ip: IpAddr,
    /// The bridge end of its veth, in the root namespace (`None` for the hub
    /// and in loopback mode): its counters are the node's traffic.
    pub bridge_port: Option<String>,
}

impl Node {
    /// `program` to be run inside this node's namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        tokio::process::Command::from(self.std_command(program))
    }

    /// Like [`Node::command`], as a `std` command.
    pub fn std_command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        match &self.ns {
            None => std::process::Command::new(program),
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        }
    }

    /// A listening TCP socket on this node's address, made in its namespace.
    pub fn bind(&self, port: u16) -> std::io::Result<std::net::TcpListener> {
        let addr = SocketAddr::new(self.ip, port);
        self.in_namespace(move || std::net::TcpListener::bind(addr))
    }

    /// A TCP connection to `addr` from this node (so it crosses its links).
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        self.in_namespace(move || std::net::TcpStream::connect(addr))
    }

    /// Bytes this node has sent and received over its link, from the
    /// counters of its bridge port (`None` in loopback mode and for the hub).
    pub fn link_bytes(&self) -> Option<LinkBytes> {
        let port = self.bridge_port.as_ref()?;
        let read = |what: &str| -> Option<u64> {
            std::fs::read_to_string(format!("/sys/class/net/{port}/statistics/{what}")).ok()?.trim().parse().ok()
        };
        // The bridge end receives what the node sends, and the other way round.
        Some(LinkBytes { sent: read("rx_bytes")?, received: read("tx_bytes")?, received_packets: read("tx_packets")? })
    }

    /// Runs `f` on a thread that has entered this node's namespace (or
    /// directly for the root namespace).
    fn in_namespace<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let Some(ns) = self.ns.clone() else { return f() };
        std::thread::spawn(move || {
            let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
            // SAFETY: setns on a namespace file descriptor we own, on this
            // short-lived thread only; it changes no memory of ours.
            #[allow(unsafe_code)]
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| std::io::Error::other("namespace thread panicked"))?
    }
}

/// Bytes a node sent and received on its link, headers included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkBytes {
    /// From the node (its upload).
    pub sent: u64,
    /// To the node (its download).
    pub received: u64,
    /// Packets to the node: with `received`, the bytes per packet, which
    /// is what the kernel's per-packet work on the shaped links scales with.
    pub received_packets: u64,
}

/// The whole network. Dropping it removes every namespace and interface it made.
#[derive(Debug)]
pub struct Topology {
    /// Namespaces or the loopback fallback.
    pub mode: Mode,
    /// The root namespace's side: the manager, the scheduler and the tracker run here.
    pub hub: Node,
    /// The origin's node (the origin and the seed peer run here).
    pub origin: Node,
    /// One node per peer.
    pub peers: Vec<Node>,
    /// Namespaces made (removed on drop); the bridge too when `true`.
    made_namespaces: Vec<String>,
    made_bridge: bool,
    /// Neighbour-table limits to restore on drop (they were raised).
    neigh_restore: Option<[String; 3]>,
    /// Held while the namespaces exist: one topology at a time per machine.
    _lock: Option<std::fs::File>,
}

impl Topology {
    /// Namespaces shaped to `rates`, or the loopback fallback (saying why)
    /// when they cannot be made.
    pub fn create(peers: usize, rates: &LinkRates) -> anyhow::Result<Self> {
        if peers > MAX_PEERS {
            bail!("at most {MAX_PEERS} peers fit the address plan");
        }
        match Self::namespaces(peers, rates) {
            Ok(t) => Ok(t),
            Err(e) => Ok(Self::loopback(peers, format!("{e:#}"))),
        }
    }

    /// The loopback fallback: one `127.213.x.y` address per node.
    pub fn loopback(peers: usize, reason: String) -> Self {
        let node = |name: String, ip: Ipv4Addr| Node { name, ns: None, ip: IpAddr::V4(ip), bridge_port: None };
        Self {
            mode: Mode::Loopback { reason },
            hub: node("hub".into(), Ipv4Addr::new(127, 0, 0, 1)),
            origin: node("origin".into(), Ipv4Addr::new(127, 213, 0, 2)),
            peers: (0..peers).map(|i| node(format!("peer-{i}"), peer_ip(127, i))).collect(),
            made_namespaces: Vec::new(),
            made_bridge: false,
            neigh_restore: None,
            _lock: None,
        }
    }

    /// Builds the namespaces, the bridge and the shaped links.
    /// Waits while another topology exists on this machine (a lock file).
    pub fn namespaces(peers: usize, rates: &LinkRates) -> anyhow::Result<Self> {
        let lock = lock_machine()?;
        remove_leftovers();
        let mut t = Self {
            mode: Mode::Namespaces,
            hub: Node { name: "hub".into(), ns: None, ip: IpAddr::V4(Ipv4Addr::new(10, 213, 0, 1)), bridge_port: None },
            origin: Node {
                name: "origin".into(),
                ns: Some(ORIGIN_NS.into()),
                ip: IpAddr::V4(Ipv4Addr::new(10, 213, 0, 2)),
                bridge_port: Some(format!("{PREFIX}-ob")),
            },
            peers: (0..peers)
                .map(|i| Node {
                    name: format!("peer-{i}"),
                    ns: Some(format!("{PREFIX}-p{i}")),
                    ip: IpAddr::V4(peer_ip(10, i)),
                    bridge_port: Some(format!("{PREFIX}-p{i}b")),
                })
                .collect(),
            made_namespaces: Vec::new(),
            made_bridge: false,
            neigh_restore: None,
            _lock: Some(lock),
        };
        t.neigh_restore = raise_neighbour_limits(peers);
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        t.made_bridge = true;
        ip(&["addr", "add", &format!("{}/16", t.hub.ip), "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        let origin = t.origin.clone();
        t.attach(&origin, "o", rates.origin_up_bps, None)?;
        for (i, p) in t.peers.clone().iter().enumerate() {
            t.attach(p, &format!("p{i}"), rates.peer_up_bps, Some(rates.peer_down_bps))?;
        }
        Ok(t)
    }

    /// Makes `node`'s namespace and veth, addresses it and shapes it.
    fn attach(&mut self, node: &Node, tag: &str, up_bps: u64, down_bps: Option<u64>) -> anyhow::Result<()> {
        let ns = node.ns.as_deref().expect("a namespaced node");
        let (inner, outer) = (format!("{PREFIX}-{tag}"), format!("{PREFIX}-{tag}b"));
        ip(&["netns", "add", ns])?;
        self.made_namespaces.push(ns.to_string());
        ip(&["link", "add", &inner, "type", "veth", "peer", "name", &outer])?;
        ip(&["link", "set", &inner, "netns", ns])?;
        ip(&["link", "set", &outer, "master", BRIDGE, "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{}/16", node.ip), "dev", &inner])?;
        ip(&["-n", ns, "link", "set", &inner, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        shape(Some(ns), &inner, up_bps)?;
        if let Some(down) = down_bps {
            shape(None, &outer, down)?;
        }
        Ok(())
    }

    /// Every node: the origin first, then the peers.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.origin).chain(self.peers.iter())
    }

    /// Whether the links are shaped by the kernel.
    pub fn shaped(&self) -> bool {
        self.mode == Mode::Namespaces
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end and so the pair.
        for ns in self.made_namespaces.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
        }
        if self.made_bridge {
            let _ = ip(&["link", "del", BRIDGE]);
        }
        if let Some(old) = self.neigh_restore.take() {
            for (file, value) in NEIGH_LIMITS.iter().zip(old) {
                let _ = std::fs::write(file, value);
            }
        }
    }
}

/// The kernel's neighbour (ARP) table limits: a full mesh of n nodes needs
/// about n^2 entries, more than the default 1024 beyond ~30 peers (peers
/// then cannot reach each other: "neighbor table overflow").
const NEIGH_LIMITS: [&str; 3] = [
    "/proc/sys/net/ipv4/neigh/default/gc_thresh1",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
];

/// Raises the neighbour table limits for `peers` when they are too low;
/// returns the old values to restore.
fn raise_neighbour_limits(peers: usize) -> Option<[String; 3]> {
    let need = 2 * (peers as u64 + 2).pow(2);
    let old: Vec<String> = NEIGH_LIMITS.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect();
    let hard: u64 = old[2].trim().parse().ok()?;
    if hard >= need {
        return None;
    }
    for (file, value) in NEIGH_LIMITS.iter().zip([need / 4, need / 2, need]) {
        std::fs::write(file, value.to_string()).ok()?;
    }
    Some([old[0].clone(), old[1].clone(), old[2].clone()])
}

fn peer_ip(first: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(first, 213, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
}

/// A `tc tbf` on `dev`'s egress at `bps`: a burst of 4 ms of traffic (at
/// least 64 KiB, so TSO segments pass whole) and a 50 ms queue.
fn shape(ns: Option<&str>, dev: &str, bps: u64) -> anyhow::Result<()> {
    let burst = (bps / 8 / 250).max(64 * 1024);
    let (rate, burst) = (format!("{bps}bit"), format!("{burst}b"));
    let mut args = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst, "latency", "50ms"]);
    run("tc", &args)
}

/// Takes the machine-wide lock of the benchmark's network (released when
/// the file is closed, also when the process dies).
fn lock_machine() -> anyhow::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("{PREFIX}-netns.lock"));
    let file = std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; blocks until the lock is free.
    #[allow(unsafe_code)]
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("lock {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Removes every namespace and the bridge a killed earlier run left behind.
pub fn remove_leftovers() {
    if let Ok(out) = std::process::Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line.split_whitespace().next().filter(|n| n.starts_with(PREFIX)) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    let _ = std::process::Command::new("ip")
        .args(["link", "del", BRIDGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
