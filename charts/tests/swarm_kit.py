"""What swarm_smoke.py runs besides the chart's binaries, all on loopback:
an HTTP origin that counts what it serves, the Debian `docker-registry`
with its access log, a small image built with umoci and pushed with skopeo,
and a private containerd (own root, state and socket) pulled from with
`ctr`. The Rust kit (tests/src/registry.rs, oci.rs, containerd.rs) does the
same for the workspace tests; this is its counterpart for the chart's.
"""

import hashlib
import http.server
import json
import pathlib
import random
import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass

from trust_smoke import Processes, wait_for

# What the checks run, and the Debian package of each (.ci/run installs them).
TOOLS = {"docker-registry": "docker-registry", "containerd": "containerd", "ctr": "containerd",
         "skopeo": "skopeo", "umoci": "umoci"}
# Limits of the external tools' steps, in seconds.
STEP = 120
PULL = 180
# The snapshotter a pull unpacks into: plain directories, no overlayfs.
SNAPSHOTTER = "native"
# containerd plugins that would need other services or kernel features.
DISABLED_PLUGINS = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.zfs"]


def missing_tools() -> list[str]:
    """The tools of TOOLS that are not installed."""
    return [t for t in TOOLS if not shutil.which(t)]


def port_free(addr: str) -> bool:
    """Whether HOST:PORT can be bound now."""
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        # As the servers bind: connections of an earlier run in TIME_WAIT
        # do not make the port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


def run(argv: list[str], timeout: float = STEP) -> str:
    """Runs a tool; its stdout, or an error with its output when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-2000:]}")
    return proc.stdout


def sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# The origin.


class Origin:
    """One file at http://127.0.0.1:<port>/file, with a strong ETag and single
    ranges (as dfdaemon's back-to-source asks: a one-byte probe, then piece
    ranges with If-Range), counting GETs and body bytes by User-Agent."""

    def __init__(self, content: bytes):
        self.content = content
        self.etag = f'"{hashlib.sha256(content).hexdigest()}"'
        self.lock = threading.Lock()
        self.served: dict[str, list[int]] = {}  # User-Agent -> [GETs, body bytes]
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                origin.answer(self, body=True)

            def do_HEAD(self):
                origin.answer(self, body=False)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/file"

    def answer(self, h: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        if h.path != "/file":
            h.send_error(404)
            return
        size = len(self.content)
        start, end, status = 0, size, 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
        if m and h.headers.get("If-Range", self.etag) == self.etag:
            start, end, status = int(m[1]), min(int(m[2]) + 1, size) if m[2] else size, 206
            if start >= size:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        h.send_response(status)
        h.send_header("Content-Length", str(end - start))
        h.send_header("ETag", self.etag)
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        h.end_headers()
        if body:
            h.wfile.write(self.content[start:end])
            with self.lock:
                seen = self.served.setdefault(h.headers.get("User-Agent", ""), [0, 0])
                seen[0] += 1
                seen[1] += end - start

    def by_agent(self) -> dict[str, list[int]]:
        """User-Agent -> [GETs, body bytes] so far."""
        with self.lock:
            return {k: list(v) for k, v in self.served.items()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The registry.


@dataclass
class Access:
    """One line of the registry's access log."""

    method: str
    path: str
    status: int
    bytes: int
    agent: str

    @property
    def blob(self) -> str | None:
        """The digest of a /v2/<name>/blobs/<digest> request."""
        m = re.match(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})(\?.*)?$", self.path)
        return m[1] if m else None


ACCESS_LINE = re.compile(r'\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"\s*$')


class Registry:
    """docker-registry serving plain HTTP on `addr`, storing under `dir`; its
    access log (combined format) and its own log (JSON) go to one file."""

    def __init__(self, procs: Processes, dir: pathlib.Path, addr: str):
        self.addr = addr
        (dir / "storage").mkdir(parents=True)
        config = dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(dir / 'storage'))}\n"
            f"http:\n  addr: {addr}\n  secret: darter-chart-smoke\n")
        self.log = dir / "registry.log"
        proc = procs.start("docker-registry", ["docker-registry", "serve", str(config)],
                           None, self.log)

        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {proc.returncode}")
            return f'"msg":"listening on {addr}' in self.log.read_text(errors="replace")

        wait_for(f"docker-registry to listen on {addr}", listening, 30)

    def requests(self) -> list[Access]:
        """Every request logged so far, oldest first."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = ACCESS_LINE.search(line)
            if m:
                out.append(Access(m[1], m[2], int(m[3]), 0 if m[4] == "-" else int(m[4]), m[5]))
        return out


# The image.


@dataclass
class Image:
    """An image built as an OCI layout."""

    layout: pathlib.Path
    manifest: str
    config: str
    layers: list[tuple[str, int, str]]  # (blob digest, blob size, diff_id)
    files: dict[str, str]  # path under the root -> sha256 of its content

    def blobs(self) -> dict[str, int]:
        """digest -> size of every blob a pull fetches (config and layers)."""
        config = self.layout / "blobs/sha256" / self.config.removeprefix("sha256:")
        return {self.config: config.stat().st_size, **{d: size for d, size, _ in self.layers}}

    def chain_id(self) -> str:
        """The chain ID of its top layer: the snapshot a pull commits."""
        chain = self.layers[0][2]
        for _, _, diff_id in self.layers[1:]:
            chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        return chain


def build_image(dir: pathlib.Path) -> Image:
    """Two layers of random files under data/ (the second overwriting one
    file of the first), built with umoci."""
    rng = random.Random(15)
    layers = [{"data/motd.txt": b"darter chart smoke, layer 0\n", "data/a.bin": rng.randbytes((1 << 20) + 3)},
              {"data/b.bin": rng.randbytes(600 << 10), "data/motd.txt": b"layer 1 overwrote this\n"}]
    layout = dir / "layout"
    image = f"{layout}:v1"
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", image])
    run(["umoci", "config", "--image", image, "--no-history"])
    files = {}
    for i, layer in enumerate(layers):
        stage = dir / f"stage-{i}"
        for rel, content in layer.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_bytes(content)
            files[rel] = hashlib.sha256(content).hexdigest()
        run(["umoci", "insert", "--image", image, str(stage / "data"), "/data"])
    run(["umoci", "gc", "--layout", str(layout)])

    def blob(digest: str) -> dict:
        return json.loads((layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_text())

    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    m = blob(manifest)
    diff_ids = blob(m["config"]["digest"])["rootfs"]["diff_ids"]
    return Image(layout, manifest, m["config"]["digest"],
                 [(l["digest"], l["size"], d) for l, d in zip(m["layers"], diff_ids, strict=True)], files)


def push(image: Image, registry: Registry, repository: str) -> str:
    """Pushes the image with skopeo; the reference to pull."""
    ref = f"{registry.addr}/{repository}:v1"
    run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", f"oci:{image.layout}:v1", f"docker://{ref}"])
    return ref


# containerd.


def containerd_config(dir: pathlib.Path, certs: str) -> str:
    """A node's containerd config: everything under `dir`, the CRI plugin's
    registry config_path at `certs` (what the node set-up checks; `ctr`
    reads the same directory through --hosts-dir, as it resolves and
    fetches client-side), the plugins needing more than a directory off."""
    q = json.dumps
    return (f"version = 2\nroot = {q(str(dir / 'root'))}\nstate = {q(str(dir / 'state'))}\n"
            f"disabled_plugins = {q(DISABLED_PLUGINS)}\n\n"
            f"[grpc]\n  address = {q(str(dir / 'containerd.sock'))}\n\n"
            f"[ttrpc]\n  address = {q(str(dir / 'containerd.sock.ttrpc'))}\n\n"
            f"[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {q(str(dir / 'opt'))}\n\n"
            f"[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = {q(certs)}\n")


class Containerd:
    """A containerd of its own started from `config` (see containerd_config),
    and `ctr` against it in namespace `darter-chart-smoke`."""

    NAMESPACE = "darter-chart-smoke"

    def __init__(self, procs: Processes, dir: pathlib.Path, config: pathlib.Path):
        self.dir = dir
        self.socket = dir / "containerd.sock"
        proc = procs.start("containerd", ["containerd", "--config", str(config)], None, dir / "containerd.log")

        def serving():
            if proc.poll() is not None:
                raise RuntimeError(f"containerd exited {proc.returncode}")
            return self.socket.exists() and subprocess.run(
                self.ctr("version"), capture_output=True, timeout=10).returncode == 0

        wait_for("containerd to serve", serving, 30)

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", self.NAMESPACE, *args]

    def pull(self, ref: str, hosts_dir: str) -> str:
        """`ctr images pull --hosts-dir`, unpacked; the chain ID it printed."""
        local = "--local" in run(["ctr", "images", "pull", "--help"])
        out = run(self.ctr("images", "pull", "--snapshotter", SNAPSHOTTER, "--print-chainid",
                           *(["--local"] if local else []), "--hosts-dir", hosts_dir, ref), PULL)
        m = re.search(r"image chain ID: (\S+)", out)
        if not m:
            raise RuntimeError(f"ctr printed no chain ID: {out[-1000:]}")
        return m[1]

    def rootfs_files(self, chain_id: str) -> dict[str, str]:
        """path -> sha256 of every regular file of the unpacked image, read
        through a view of its snapshot (a bind of a directory: read there)."""
        snapshots = ("snapshots", "--snapshotter", SNAPSHOTTER)
        mounts = json.loads(run(self.ctr(*snapshots, "view", "--mounts", "darter-smoke-view", chain_id)))
        try:
            if len(mounts) != 1 or mounts[0]["Type"] != "bind":
                raise RuntimeError(f"unexpected mounts of a native view: {mounts}")
            root = pathlib.Path(mounts[0]["Source"])
            return {str(p.relative_to(root)): sha256_file(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
        finally:
            subprocess.run(self.ctr(*snapshots, "rm", "darter-smoke-view"), capture_output=True, timeout=60)


def unmount_under(dir: pathlib.Path) -> None:
    """Lazily unmounts whatever a killed containerd left mounted under dir."""
    points = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].replace("\\040", " ")
        if point == str(dir) or point.startswith(f"{dir}/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
