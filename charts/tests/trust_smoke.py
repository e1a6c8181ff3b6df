"""Starts a rendered value set's manager and members for real, on loopback,
and checks that every member enrolls with what the chart gave it.

    trust_smoke.py RENDERED.yaml [REINSTALL.yaml]

Each component runs from its rendered config, environment and mounted files
(the sandbox of check_rendered.py), with two changes only: every listener on
127.0.0.1:0 and host.ip 127.0.0.1 (nothing leaves loopback), and members
dial the manager at the port it got. The manager must start with the chart's
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

import yaml

from check_rendered import LISTENERS, binary_of, bin_dir, get
from manifests import Rendered
from report import Report
from sandbox import NODE_NAME, Sandbox

PATIENCE = float(os.environ.get("DARTER_TEST_PATIENCE", "1"))


def local(cfg: dict, binary: str, manager_grpc: str | None) -> None:
    """Listeners on 127.0.0.1:0, the advertised IP on loopback, and the
    manager at the address it was given."""
    for field in LISTENERS[binary].values():
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


def start_all(report: Report, r: Rendered, tmp: pathlib.Path, tag: str) -> None:
    """Starts the manager (on a fresh database) and every member (on the
    data kept under tmp), checks each enrolls, stops them all."""
    bins = bin_dir()
    members = []
    manager = None
    for pod in r.pods:
        for c in pod.containers(init=False):
            binary = binary_of(c)
            if binary == "manager":
                manager = (pod, c)
            elif binary:
                members.append((pod, c, binary))
    if manager is None:
        report.note("no manager in this value set: nothing to start")
        return
    procs: list[tuple[str, subprocess.Popen, pathlib.Path]] = []
    try:
        pod, c = manager
        box = Sandbox(r, pod, c, tmp / f"manager-{tag}")
        argv, env = box.command(bins / "manager", lambda cfg: local(cfg, "manager", None))
        ready = tmp / f"manager-{tag}.ready"
        log = tmp / f"manager-{tag}.log"
        procs.append(("manager", subprocess.Popen([*argv, "--ready-file", str(ready)], env=env,
                                                  stdout=log.open("w"), stderr=subprocess.STDOUT), log))
        addrs = wait_for("the manager's ready file", lambda: ready.exists() and json.loads(ready.read_text())["addresses"], 60)
        report.ok(f"{pod.title}: the manager starts with the chart's CA, bootstrap tokens and root password (grpc {addrs['grpc']})")
        cluster = None
        for pod, c, binary in members:
            box = Sandbox(r, pod, c, tmp / pod.workload)
            box.env = {**box.env, f"{binary.upper()}__HOST__IP": "127.0.0.1"}
            argv, env = box.command(bins / binary, lambda cfg, b=binary: local(cfg, b, addrs["grpc"]))
            cluster = cluster or get(yaml_config(box, c), "manager.cluster_id")
            log = tmp / f"{pod.workload}-{tag}.log"
            procs.append((pod.title, subprocess.Popen(argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT), log))
        password = r.secret_data(secret_of(manager[1]))["password"].decode()
        token = api(addrs["rest"], "/users/signin", body={"name": "root", "password": password})["token"]
        report.ok("root signs in with the password from the chart's Secret")
        wanted = {(role, host) for role, host in expected(members)}

        def enrolled():
            certs = api(addrs["rest"], "/certificates", token)
            have = {(c["role"], c["host"]) for c in certs if c["cluster_id"] == cluster}
            return wanted <= have and have

        try:
            wait_for("every member's certificate", enrolled, 60)
            for role, host in sorted(wanted):
                report.ok(f"{role} {host} enrolled in cluster {cluster} with its join token and the CA it was given")
        except TimeoutError:
            certs = api(addrs["rest"], "/certificates", token)
            report.fail(f"members enrolled: {[(c['role'], c['host'], c['cluster_id']) for c in certs]}, wanted {sorted(wanted)} in cluster {cluster}")
    except Exception as e:  # a start that failed: show its log
        report.fail(f"{type(e).__name__}: {e}")
    finally:
        # Members first, so their goodbyes reach the manager.
        for name, p, log in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if report.failed:
            for name, p, log in procs:
                print(f"  --- {name} (exit {p.returncode}), last lines of its log:")
                for line in log.read_text(errors="replace").splitlines()[-8:]:
                    print(f"      {line}")


def yaml_config(box: Sandbox, c: dict) -> dict:
    args = c.get("args") or []
    return yaml.safe_load(pathlib.Path(box.host(args[args.index("--config") + 1])).read_text())


def secret_of(manager: dict) -> str:
    for e in manager.get("env", []):
        if e["name"] == "MANAGER__AUTH__ROOT_PASSWORD":
            return e["valueFrom"]["secretKeyRef"]["name"]
    raise KeyError("MANAGER__AUTH__ROOT_PASSWORD")


def expected(members) -> list[tuple[str, str]]:
    """(role, host name) each member's certificate should carry."""
    out = []
    for pod, c, binary in members:
        if binary == "scheduler":
            out.append(("scheduler", pod.name))
        elif pod.kind == "StatefulSet":
            out.append(("seed_peer", pod.name))
        else:
            out.append(("peer", NODE_NAME))
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
