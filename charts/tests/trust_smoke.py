"""Starts a rendered value set's manager and members for real, on loopback,
and checks that every member enrolls with what the chart gave it.

    trust_smoke.py RENDERED.yaml [REINSTALL.yaml]

Each component runs from its rendered config, environment and mounted files
(the sandbox of check_rendered.py), with two changes only: every listener on
127.0.0.1:0 and host.ip 127.0.0.1 (nothing leaves loopback), and members
dial the manager at the port it got; each is given --ready-file, where it
says which ports it got. swarm_smoke.py starts a rendering the same way
(start_cluster). The manager must start with the chart's
CA (PKCS#8 made in the template), its bootstrap tokens file and the root
password Secret; then, signed in as root with that password, the manager's
API must list a certificate of cluster N for the scheduler, the seed peer
and the peer, each under its pod's (or node's) name: the join token Secret,
the bootstrap file, the CA certificate members get, the roles and the host
names all agree. With a second rendering (the chart rendered again: a new
CA and new tokens, as after an uninstall and install), everything is
started once more, the manager on a new database but each member on the
data directory it had (a node's host path, a seed peer's volume, both
outlive a release): every member must enroll again with the new trust
rather than present the certificate of the old CA. Binaries come from
DARTER_BIN_DIR like check_rendered.py.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import yaml

from check_rendered import LISTENERS, binary_of, bin_dir, get
from manifests import Pod, Rendered
from report import Report
from sandbox import NODE_NAME, Sandbox

PATIENCE = float(os.environ.get("DARTER_TEST_PATIENCE", "1"))


def local(cfg: dict, binary: str, manager_grpc: str | None, keep: frozenset[str] = frozenset()) -> None:
    """Listeners on 127.0.0.1:0 (but those in `keep`, left as rendered), the
    advertised IP on loopback, and the manager at the address it was given."""
    for field in LISTENERS[binary].values():
        if field in keep:
            continue
        node, *path, last = [cfg, *field.split(".")]
        for part in path:
            node = node.setdefault(part, {})
        node[last] = "127.0.0.1:0"
    if manager_grpc:
        cfg.setdefault("manager", {})["addrs"] = [manager_grpc]


def wait_for(what: str, check, seconds: float):
    deadline = time.monotonic() + seconds * PATIENCE
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def api(rest: str, path: str, token: str | None = None, body: dict | None = None):
    req = urllib.request.Request(f"http://{rest}/api/v1{path}", method="POST" if body else "GET")
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    data = json.dumps(body).encode() if body else None
    with urllib.request.urlopen(req, data=data, timeout=10) as resp:
        return json.loads(resp.read())


def main(paths: list[str]) -> int:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="darter-smoke-") as tmp:
        for i, path in enumerate(paths):
            if i:
                report.note(f"again as after a reinstall ({path}): a new manager database, the members' data directories kept")
            start_all(report, Rendered(pathlib.Path(path)), pathlib.Path(tmp), f"round{i}")
            if report.failed:
                break
    return report.finish()


class Processes:
    """Processes a check starts, as a context: on leaving it they are
    stopped in reverse order of start (SIGTERM, SIGKILL after 15 s), an
    exception raised inside is reported as a failure, and when anything
    failed each one's last log lines are printed."""

    def __init__(self, report: Report, lines: int = 8):
        self.report = report
        self.lines = lines
        self.started: list[tuple[str, subprocess.Popen, pathlib.Path]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None, log: pathlib.Path) -> subprocess.Popen:
        """Starts `argv` with stdout and stderr to `log`."""
        with log.open("w") as out:
            p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.started.append((name, p, log))
        return p

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if error is not None:  # a start or a step that failed: show the logs
            self.report.fail(f"{kind.__name__}: {error}")
        for name, p, log in reversed(self.started):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.report.failed:
            for name, p, log in self.started:
                print(f"  --- {name} (exit {p.returncode}), last lines of its log:")
                for line in log.read_text(errors="replace").splitlines()[-self.lines:]:
                    print(f"      {line}")
        return isinstance(error, Exception)


@dataclass
class Member:
    """A scheduler, seed peer or dfdaemon started from its rendered pod."""

    pod: Pod
    container: dict
    binary: str
    box: Sandbox
    ready: pathlib.Path
    log: pathlib.Path

    def addresses(self) -> dict[str, str]:
        """Its bound addresses (from its ready file, waited for)."""
        return wait_for(f"{self.pod.title}'s ready file",
                        lambda: self.ready.exists() and json.loads(self.ready.read_text())["addresses"], 60)


@dataclass
class Cluster:
    """A rendering's manager and members, running."""

    manager: tuple[Pod, dict]
    addrs: dict[str, str]  # the manager's bound addresses
    cluster_id: int | None
    members: list[Member]


def start_cluster(procs: Processes, r: Rendered, tmp: pathlib.Path, tag: str,
                  keep: frozenset[str] = frozenset()) -> Cluster | None:
    """Starts the manager (on a fresh database under tmp) and every member
    (on the data kept under tmp) of the rendering, each from its rendered
    config, environment and files with the changes of local() (listeners in
    `keep` as rendered); None when the value set has no manager."""
    bins = bin_dir()
    rendered_members = []
    manager = None
    for pod in r.pods:
        for c in pod.containers(init=False):
            binary = binary_of(c)
            if binary == "manager":
                manager = (pod, c)
            elif binary:
                rendered_members.append((pod, c, binary))
    if manager is None:
        procs.report.note("no manager in this value set: nothing to start")
        return None
    pod, c = manager
    box = Sandbox(r, pod, c, tmp / f"manager-{tag}")
    argv, env = box.command(bins / "manager", lambda cfg: local(cfg, "manager", None))
    ready = tmp / f"manager-{tag}.ready"
    procs.start("manager", [*argv, "--ready-file", str(ready)], env, tmp / f"manager-{tag}.log")
    addrs = wait_for("the manager's ready file", lambda: ready.exists() and json.loads(ready.read_text())["addresses"], 60)
    procs.report.ok(f"{pod.title}: the manager starts with the chart's CA, bootstrap tokens and root password (grpc {addrs['grpc']})")
    cluster = Cluster(manager, addrs, None, [])
    for pod, c, binary in rendered_members:
        box = Sandbox(r, pod, c, tmp / pod.workload)
        box.env = {**box.env, f"{binary.upper()}__HOST__IP": "127.0.0.1"}
        argv, env = box.command(bins / binary, lambda cfg, b=binary: local(cfg, b, addrs["grpc"], keep))
        cluster.cluster_id = cluster.cluster_id or get(yaml_config(box, c), "manager.cluster_id")
        ready, log = tmp / f"{pod.workload}-{tag}.ready", tmp / f"{pod.workload}-{tag}.log"
        ready.unlink(missing_ok=True)
        procs.start(pod.title, [*argv, "--ready-file", str(ready)], env, log)
        cluster.members.append(Member(pod, c, binary, box, ready, log))
    return cluster


def start_all(report: Report, r: Rendered, tmp: pathlib.Path, tag: str) -> None:
    """Starts the manager (on a fresh database) and every member (on the
    data kept under tmp), checks each enrolls, stops them all."""
    with Processes(report) as procs:
        cluster = start_cluster(procs, r, tmp, tag)
        if cluster is not None:
            check_enrolled(report, r, cluster)


def check_enrolled(report: Report, r: Rendered, cluster: Cluster) -> None:
    """Signed in as root with the chart's password, the manager lists a
    certificate of the cluster for every member, under its pod's (or
    node's) name and role."""
    rest = cluster.addrs["rest"]
    password = r.secret_data(secret_of(cluster.manager[1]))["password"].decode()
    token = api(rest, "/users/signin", body={"name": "root", "password": password})["token"]
    report.ok("root signs in with the password from the chart's Secret")
    wanted = set(expected(cluster.members))

    def enrolled():
        certs = api(rest, "/certificates", token)
        have = {(c["role"], c["host"]) for c in certs if c["cluster_id"] == cluster.cluster_id}
        return wanted <= have and have

    try:
        wait_for("every member's certificate", enrolled, 60)
        for role, host in sorted(wanted):
            report.ok(f"{role} {host} enrolled in cluster {cluster.cluster_id} with its join token and the CA it was given")
    except TimeoutError:
        certs = api(rest, "/certificates", token)
        report.fail(f"members enrolled: {[(c['role'], c['host'], c['cluster_id']) for c in certs]}, "
                    f"wanted {sorted(wanted)} in cluster {cluster.cluster_id}")


def yaml_config(box: Sandbox, c: dict) -> dict:
    args = c.get("args") or []
    return yaml.safe_load(pathlib.Path(box.host(args[args.index("--config") + 1])).read_text())


def secret_of(manager: dict) -> str:
    for e in manager.get("env", []):
        if e["name"] == "MANAGER__AUTH__ROOT_PASSWORD":
            return e["valueFrom"]["secretKeyRef"]["name"]
    raise KeyError("MANAGER__AUTH__ROOT_PASSWORD")


def expected(members: list[Member]) -> list[tuple[str, str]]:
    """(role, host name) each member's certificate should carry."""
    return [(role_of(m), NODE_NAME if role_of(m) == "peer" else m.pod.name) for m in members]


def role_of(member: Member) -> str:
    """scheduler, seed_peer (a dfdaemon StatefulSet) or peer (the DaemonSet)."""
    if member.binary == "scheduler":
        return "scheduler"
    return "seed_peer" if member.pod.kind == "StatefulSet" else "peer"


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
