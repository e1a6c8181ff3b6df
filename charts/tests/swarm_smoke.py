"""Starts a rendered value set's manager and members on loopback (the
start-up of trust_smoke.py) and checks that downloads go through the swarm
the chart sets up:

    swarm_smoke.py RENDERED.yaml

- dfget, against the download socket the chart gives the node's dfdaemon,
  fetches a 12 MiB file (many pieces) from an origin on loopback: the
  content is whole, the origin served it once (its size, plus the one-byte
  probe), to a dfdaemon (User-Agent darter-dfdaemon/), and that was the
  seed peer: the peer's metrics count every byte as from peers and none
  from the origin, the seed's count them from the origin and uploaded.
- The node set-up's init container, run as rendered (`dfdaemon
  containerd-config`, its node paths in a sandbox), points a containerd of
  its own at the node's mirror for the value set's loopback registry (the
  Debian docker-registry, started on the address nodeSetup.registries
  names); `ctr images pull` through those hosts.toml files unpacks the
  image pushed there, file for file; the registry's access log shows each
  blob served once in all, to a dfdaemon, never to containerd; the peer's
  mirror served the blobs through the swarm (proxy_requests_total mirror
  p2p) and fetched nothing from the origin itself, so the seed did.

Members run as in trust_smoke.py (listeners on 127.0.0.1:0, host.ip
127.0.0.1), but the dfdaemon's proxy.addr stays as rendered: containerd's
hosts.toml names it. The value set must render a registry on 127.0.0.1 in
nodeSetup.registries (charts/darter/ci/swarm-values.yaml). Needs root,
containerd, docker-registry, skopeo and umoci: without them the check is
skipped, except under CI (CI set), where it fails.
"""

import contextlib
import hashlib
import os
import pathlib
import random
import re
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass

from check_node_setup import NodeSetup, options
from check_rendered import bin_dir, get
from manifests import Rendered
from report import Report
from sandbox import Sandbox
from swarm_kit import (TOOLS, Containerd, Image, Origin, Registry, build_image, containerd_config, missing_tools,
                       port_free, push, sha256_file, unmount_under)
from trust_smoke import Cluster, Member, Processes, expected, role_of, start_cluster, wait_for, yaml_config

DFDAEMON_UA = "darter-dfdaemon/"
FILE_SIZE = 12 << 20
# dfdaemon probes an origin with one byte (Range: bytes=0-0) before its
# range requests: a single copy is the size, plus that byte.
PROBE = 1
# Colours in the binaries' text logs.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def metrics(addr: str) -> str:
    """The /metrics page at addr."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        return resp.read().decode()


def value(page: str, series: str) -> float:
    """The sample of exactly `series` (name and labels as written), 0 if absent."""
    for line in page.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


def healthy(addr: str) -> bool:
    """Whether /healthz at addr answers 200."""
    try:
        with urllib.request.urlopen(f"http://{addr}/healthz", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def node_setup(r: Rendered):
    """The node set-up DaemonSet's pod, init container and its options."""
    for pod in r.pods:
        for c in pod.containers(init=True):
            args = c.get("args") or []
            if args[:1] == ["containerd-config"] and "--restore" not in args:
                return pod, c, options(args)
    raise LookupError("no node set-up init container (dfdaemon containerd-config) in the rendering")


@dataclass
class Swarm:
    """What the checks share: the rendering, its processes running under
    tmp, the peer and seed peer among them, and the registry with the image
    pushed to it as ref."""

    report: Report
    r: Rendered
    procs: Processes
    tmp: pathlib.Path
    peer: Member
    seed: Member
    registry: Registry
    image: Image
    ref: str

    def counters(self) -> dict[str, dict[str, float]]:
        """The peer's and the seed peer's byte counters."""
        return {"peer": bytes_by_source(self.peer), "seed": bytes_by_source(self.seed)}


def main(path: str) -> int:
    report = Report()
    missing = missing_tools() + ([] if os.geteuid() == 0 else ["root"])
    if missing:
        packages = sorted({TOOLS.get(t, t) for t in missing})
        say = report.fail if os.environ.get("CI") else report.note
        say(f"missing {', '.join(missing)} (Debian: {', '.join(packages)}): "
            + ("CI must have them (.ci/run installs them)" if os.environ.get("CI") else "skipped"))
        return report.finish()
    r = Rendered(pathlib.Path(path))
    try:
        setup = node_setup(r)
    except LookupError as e:
        report.fail(str(e))
        return report.finish()
    registry_addr = next((h for h in setup[2]["--registry"] if h.startswith("127.")), None)
    mirror = setup[2]["--mirror"].removeprefix("http://")
    if registry_addr is None:
        report.fail(f"nodeSetup.registries {setup[2]['--registry']} has no registry on loopback to pull from")
    elif busy := [a for a in (registry_addr, mirror) if not port_free(a)]:
        report.fail(f"{', '.join(busy)} in use: the registry and the mirror need the addresses the value set names")
    else:
        run(report, r, setup, registry_addr, mirror)
    return report.finish()


def run(report: Report, r: Rendered, setup, registry_addr: str, mirror: str) -> None:
    """Starts the registry (with the image pushed), the origin and the
    rendering's manager and members, runs the checks, stops everything and
    removes what it wrote, whatever happened."""
    with tempfile.TemporaryDirectory(prefix="darter-swarm-") as tmp, contextlib.ExitStack() as stack:
        tmp = pathlib.Path(tmp)
        stack.callback(unmount_under, tmp)
        procs = stack.enter_context(Processes(report, lines=12))
        registry = Registry(procs, tmp / "registry", registry_addr)
        (tmp / "image").mkdir()
        image = build_image(tmp / "image")
        ref = push(image, registry, "darter-smoke")
        report.ok(f"docker-registry on {registry_addr} (nodeSetup.registries), image {ref} pushed with skopeo")
        content = random.Random(12).randbytes(FILE_SIZE)
        origin = Origin(content)
        stack.callback(origin.close)
        cluster = start_cluster(procs, r, tmp, "swarm", keep=frozenset({"proxy.addr"}))
        if cluster is not None:
            peer, seed = wait_ready(report, cluster, mirror)
            swarm = Swarm(report, r, procs, tmp, peer, seed, registry, image, ref)
            check_download(swarm, origin, content)
            check_pull(swarm, setup)


def announced(log: pathlib.Path) -> set[str]:
    """The host IDs (<host name>-<ip>-<port>) a scheduler's log says
    announced themselves to it."""
    return set(re.findall(r"host announced host_id=(\S+)", ANSI.sub("", log.read_text(errors="replace"))))


def wait_ready(report: Report, cluster: Cluster, mirror: str) -> tuple[Member, Member]:
    """Waits until every member serves (/healthz), the seed peer and the
    peer have announced themselves to the scheduler and it counts the seed
    peer; the peer's mirror listens where the node set-up sends containerd.
    Returns (peer, seed peer).

    Members start at once, as pods do: a dfdaemon that asks the manager
    before the scheduler registered serves without a scheduler (downloads go
    to the origin) and asks again a second later. A scheduler that has not
    heard from the seed does not trigger it (even when the manager lists it),
    so the check waits for both announcements (the scheduler's "host
    announced" lines) and for scheduler_seed_peers_announced."""
    for m in cluster.members:
        addr = m.addresses()["metrics"]
        wait_for(f"{m.pod.title} /healthz on {addr}", lambda: healthy(addr), 60)
    roles = {role_of(m): m for m in cluster.members}
    scheduler = roles["scheduler"]
    hosts = [host for role, host in expected(cluster.members) if role != "scheduler"]
    wait_for(f"the scheduler to log \"host announced\" for {', '.join(hosts)}",
             lambda: all(any(i.startswith(f"{h}-") for i in announced(scheduler.log)) for h in hosts), 60)
    wait_for("the scheduler to count the seed peer (scheduler_seed_peers_announced)",
             lambda: value(metrics(scheduler.addresses()["metrics"]), "scheduler_seed_peers_announced") >= 1, 60)
    report.ok(f"the scheduler, the seed peer and the peer serve; {', '.join(hosts)} announced themselves to the "
              "scheduler, which counts the seed peer")
    proxy = roles["peer"].addresses().get("proxy")
    (report.ok if proxy == mirror else report.fail)(
        f"{roles['peer'].pod.title}: its mirror listens on {proxy}, the node set-up's --mirror is {mirror}")
    return roles["peer"], roles["seed_peer"]


def bytes_by_source(m: Member) -> dict[str, float]:
    """A dfdaemon's download bytes by source, and its upload bytes."""
    page = metrics(m.addresses()["metrics"])
    out = {s: value(page, f'dfdaemon_download_bytes_total{{source="{s}"}}') for s in ("origin", "peer", "local")}
    out["uploaded"] = value(page, "dfdaemon_upload_bytes_total")
    return out


def growth(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    """How much each counter of Swarm.counters() grew."""
    return {who: {k: int(v - before[who][k]) for k, v in c.items()} for who, c in after.items()}


def check_download(s: Swarm, origin: Origin, content: bytes) -> None:
    """dfget through the peer's rendered download socket: the content is
    whole, the origin served one copy, to the seed peer, and the peer got
    every byte from peers."""
    socket = get(yaml_config(s.peer.box, s.peer.container), "download.socket")
    out = s.tmp / "download.bin"
    before = s.counters()
    argv = [str(bin_dir() / "dfget"), origin.url(), "-O", str(out), "--socket", socket,
            "--no-progress", "--verbose", "--timeout", "2m"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    where = f"dfget --socket {s.peer.box.container_path(socket)}"
    if proc.returncode != 0:
        s.report.fail(f"{where} {origin.url()} exited {proc.returncode}: {proc.stderr.strip()}")
        return
    want = hashlib.sha256(content).hexdigest()
    got = sha256_file(out)
    (s.report.ok if got == want else s.report.fail)(
        f"{where}: {len(content) >> 20} MiB, sha256 {got[:16]}... (want {want[:16]}...): {proc.stderr.strip()}")
    served = origin.by_agent()
    sent = sum(b for _, b in served.values())
    ours = all(ua.startswith(DFDAEMON_UA) for ua in served)
    (s.report.ok if ours and len(content) <= sent <= len(content) + PROBE else s.report.fail)(
        f"the origin served {sent} B for a {len(content)} B file, to {sorted(served)} (one copy, to dfdaemon)")
    d = growth(s.counters(), before)
    n = len(content)
    from_seed = d["peer"]["origin"] == 0 and d["peer"]["peer"] == n and d["seed"]["origin"] == n \
        and d["seed"]["uploaded"] >= n
    (s.report.ok if from_seed else s.report.fail)(
        f"the seed peer fetched it from the origin and the peer from the seed: {d}")


def check_pull(s: Swarm, setup) -> None:
    """The node set-up as rendered, then `ctr images pull` through it: the
    image unpacks whole and each blob came from the registry once, to the
    seed peer, and through the peer's mirror and the swarm."""
    pod, c, opts = setup
    where = f"{pod.title} init {c['name']}"
    box = Sandbox(s.r, pod, c, s.tmp / "node")
    certs = box.host(opts["--certs-dir"])
    check = opts.get("--check-containerd")
    config = pathlib.Path(box.host(check)) if check else s.tmp / "containerd.toml"
    ctrd_dir = s.tmp / "ctrd"
    ctrd_dir.mkdir()
    config.write_text(containerd_config(ctrd_dir, certs))
    containerd = Containerd(s.procs, ctrd_dir, config)
    setup_run = NodeSetup(s.r, {}, bin_dir(), s.report).run_setup(box, c, s.tmp)
    if setup_run.returncode != 0:
        s.report.fail(f"{where}: exit {setup_run.returncode}: {setup_run.stderr.strip()}")
        return
    s.report.ok(f"{where} as rendered, against this containerd's config: {' '.join(setup_run.stdout.split())}")
    logged = len(s.registry.requests())
    before = s.counters()
    chain_id = containerd.pull(s.ref, certs)
    files = containerd.rootfs_files(chain_id)
    (s.report.ok if chain_id == s.image.chain_id() and files == s.image.files else s.report.fail)(
        f"ctr images pull --hosts-dir {opts['--certs-dir']} {s.ref}: chain ID {chain_id[:19]}... "
        f"(want {s.image.chain_id()[:19]}...), {len(files)} files "
        + ("as built" if files == s.image.files else f"differ: {files} != {s.image.files}"))
    check_blobs(s.report, s.registry, s.image, logged)
    d = growth(s.counters(), before)
    p2p = value(metrics(s.peer.addresses()["metrics"]), 'dfdaemon_proxy_requests_total{mode="mirror",route="p2p"}')
    blobs = s.image.blobs()
    total = sum(blobs.values())
    swarm = p2p >= len(blobs) and d["peer"]["origin"] == 0 and d["peer"]["peer"] == total \
        and d["seed"]["origin"] == total
    (s.report.ok if swarm else s.report.fail)(
        f"the peer's mirror served {p2p:.0f} blob requests through the swarm (of {len(blobs)} blobs, {total} B): {d}")


def check_blobs(report: Report, registry: Registry, image: Image, logged: int) -> None:
    """Each blob of the image was served by the registry once in all (its
    size, plus the probe's byte), to dfdaemon and to nobody else."""
    sizes = image.blobs()

    def fetches(digest: str):
        return [a for a in registry.requests()[logged:]
                if a.method == "GET" and a.status in (200, 206) and a.blob == digest]

    def darter_bytes(digest: str) -> int:
        return sum(a.bytes for a in fetches(digest) if a.agent.startswith(DFDAEMON_UA))

    try:  # a request is logged once answered: wait for the last ones
        wait_for("the registry to log every blob", lambda: all(darter_bytes(d) >= s for d, s in sizes.items()), 20)
    except TimeoutError:
        pass
    for digest, size in sizes.items():
        got = fetches(digest)
        others = [a.agent for a in got if not a.agent.startswith(DFDAEMON_UA)]
        ok = size <= darter_bytes(digest) <= size + PROBE and not others
        (report.ok if ok else report.fail)(
            f"registry: blob {digest[:19]}... ({size} B) served {darter_bytes(digest)} B to dfdaemon in "
            f"{len(got) - len(others)} GETs, to others {others}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
