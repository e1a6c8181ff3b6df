"""Checks one rendered value set of the chart against the real binaries.

    check_rendered.py RENDERED.yaml

For every container that runs manager, scheduler or dfdaemon with --config
(and every manager.yaml, scheduler.yaml or dfdaemon.yaml of a rendered
ConfigMap must be run by one):
  - the config file comes from a rendered ConfigMap the pod mounts, and the
    binary accepts it: `BINARY --config FILE [its other args] --print-config`
    with the container's environment (secrets and downward API filled in)
    exits 0. Unknown or misspelled fields, in the file or in an environment
    variable, make it exit 2;
  - each <BINARY>__SECTION__FIELD variable has this binary's prefix and
    landed on the field it names, with the value given;
  - every file the effective config names (certificates, keys, tokens, the
    bootstrap tokens file, CAs) is mounted in the container, and every place
    it writes (data directory, socket, SQLite database, state) is a
    writable mount (root filesystems are read-only);
  - every containerPort is a listener of the effective config (grpc_addr,
    rest_addr, metrics_addr, upload.grpc_addr, upload.piece_addr,
    proxy.addr) with the same port, and every listener has its port; probes
    ask /healthz on the metrics port;
  - every Service selects pods, and each of its ports targets one of their
    container ports with the same number (so Service, container and binary
    agree);
  - a member's manager.addrs that names this release's manager Service
    reaches the manager's gRPC listener.
Then the node set-up (check_node_setup.py) and which Secrets each pod
references, so what each node can read (check_secrets.py). Binaries come from
DARTER_BIN_DIR (default target/release, else target/debug). Each check
prints one line; the exit code is 1 if any failed.
"""

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

import check_node_setup
import check_secrets
from manifests import Pod, Rendered
from report import Report
from sandbox import Sandbox, SandboxError

REPO = pathlib.Path(__file__).resolve().parents[2]
PREFIX = {"manager": "MANAGER", "scheduler": "SCHEDULER", "dfdaemon": "DFDAEMON"}
LISTENERS = {
    "manager": {"grpc": "grpc_addr", "rest": "rest_addr", "metrics": "metrics_addr"},
    "scheduler": {"grpc": "grpc_addr", "metrics": "metrics_addr"},
    "dfdaemon": {
        "upload": "upload.grpc_addr",
        "piece": "upload.piece_addr",
        "metrics": "metrics_addr",
        "proxy": "proxy.addr",
    },
}
READS = {
    "manager": ["tls.ca_cert_file", "tls.ca_key_file", "tls.bootstrap_tokens_file"],
    "scheduler": ["tls.cert_file", "tls.key_file", "tls.ca_file", "tls.join_token_file"],
    "dfdaemon": ["tls.cert_file", "tls.key_file", "tls.ca_file", "tls.join_token_file",
                 "back_to_source.ca_certs", "proxy.ca_cert", "proxy.ca_key"],
}
# Printed as null whatever is set (docs/manager.md).
HIDDEN = {"auth.root_password", "auth.jwt_secret"}


def bin_dir() -> pathlib.Path:
    if os.environ.get("DARTER_BIN_DIR"):
        return pathlib.Path(os.environ["DARTER_BIN_DIR"])
    release = REPO / "target" / "release"
    return release if (release / "dfdaemon").exists() else REPO / "target" / "debug"


def get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def port_of(addr: str) -> int:
    return int(re.search(r":(\d+)$", str(addr)).group(1))


def binary_of(container: dict) -> str | None:
    """manager, scheduler or dfdaemon when the container runs it as a service."""
    command = container.get("command") or []
    name = pathlib.PurePosixPath(command[0]).name if command else ""
    if name in PREFIX and "--config" in (container.get("args") or []):
        return name
    return None


class Checker:
    def __init__(self, rendered: Rendered, bins: pathlib.Path, report: Report):
        self.r = rendered
        self.bins = bins
        self.report = report
        # (pod title, container name) -> effective config, for later checks.
        self.effective: dict[tuple[str, str], dict] = {}
        # (ConfigMap, key) of every config file a container runs with.
        self.used: set[tuple[str, str]] = set()

    def run(self) -> None:
        for pod in self.r.pods:
            for c in pod.containers(init=False):
                binary = binary_of(c)
                if binary:
                    self.check_service_container(pod, c, binary)
        self.check_unused_configs()
        self.check_services()
        self.check_manager_addrs()

    def check_service_container(self, pod: Pod, c: dict, binary: str) -> None:
        where = f"{pod.title} {c['name']}"
        with tempfile.TemporaryDirectory(prefix="darter-chart-") as tmp:
            try:
                box = Sandbox(self.r, pod, c, pathlib.Path(tmp))
            except SandboxError as e:
                self.report.fail(f"{where}: {e}")
                return
            for obj in sorted(box.external):
                self.report.note(f"{where}: {obj} is not rendered by the chart (made by the operator or cert-manager): placeholder contents")
            args = [box.expand(a) for a in c.get("args") or []]
            config = args[args.index("--config") + 1]
            source = self.config_source(box, config)
            if source is None:
                self.report.fail(f"{where}: --config {config} is not a file of a mounted ConfigMap")
                return
            argv, env = box.command(self.bins / binary)
            proc = subprocess.run([*argv, "--print-config"], env=env, capture_output=True, text=True, timeout=60)
            shown = " ".join(args)
            if proc.returncode != 0:
                self.report.fail(f"{where}: {binary} {shown} --print-config exited {proc.returncode}: {proc.stderr.strip()}")
                return
            self.report.ok(f"{where}: {binary} {shown} --print-config accepts {source}")
            cfg = yaml.safe_load(proc.stdout)
            self.effective[(pod.title, c["name"])] = cfg
            self.check_env(where, binary, box, cfg)
            self.check_files(where, binary, box, cfg)
            self.check_ports(where, binary, pod, c, cfg)

    def config_source(self, box: Sandbox, path: str) -> str | None:
        mount = box.mount_of(path)
        if not mount or "configMap" not in mount[1] or not pathlib.Path(box.host(path)).is_file():
            return None
        rel = path[len(mount[0]):].lstrip("/")
        name = mount[1]["configMap"]["name"]
        key = next((i["key"] for i in mount[1]["configMap"].get("items") or [] if i["path"] == rel), rel)
        self.used.add((name, key))
        return f"ConfigMap {name} key {key}"

    def check_unused_configs(self) -> None:
        """A config file the chart renders that no container runs with is
        checked by nothing: say so."""
        for name, cm in self.r.configmaps.items():
            for key in cm.get("data") or {}:
                if key in ("manager.yaml", "scheduler.yaml", "dfdaemon.yaml") and (name, key) not in self.used:
                    self.report.fail(f"ConfigMap {name} key {key} is a config file no container runs with")

    def check_env(self, where: str, binary: str, box: Sandbox, cfg: dict) -> None:
        for name, value in box.env.items():
            m = re.match(r"^(MANAGER|SCHEDULER|DFDAEMON)__(.+)$", name)
            if not m:
                continue
            if m.group(1) != PREFIX[binary]:
                self.report.fail(f"{where}: env {name} is not read by {binary} (its prefix is {PREFIX[binary]}__)")
                continue
            field = m.group(2).lower().replace("__", ".")
            printed = get(cfg, field)
            if field in HIDDEN:
                self.report.ok(f"{where}: env {name} names {field} (accepted; its value is never printed)")
            elif str(printed) == box.rewrite(value):
                self.report.ok(f"{where}: env {name} sets {field} = {value}")
            else:
                self.report.fail(f"{where}: env {name}={value!r} but the effective {field} is {printed!r}")

    def check_files(self, where: str, binary: str, box: Sandbox, cfg: dict) -> None:
        for field in READS[binary]:
            value = get(cfg, field)
            for path in value if isinstance(value, list) else [value]:
                if path is None:
                    continue
                shown = box.container_path(str(path))
                if pathlib.Path(str(path)).is_file():
                    self.report.ok(f"{where}: {field} {shown} is a mounted file")
                else:
                    self.report.fail(f"{where}: {field} {shown} is not a file of any mount of the container")
        writes = []
        if binary == "manager":
            db = re.match(r"^sqlite://(/[^?]*)", str(cfg.get("database_url")))
            if db:
                writes.append(("database_url", db.group(1)))
            writes.append(("auth.root_password_file", get(cfg, "auth.root_password_file")))
        if binary == "dfdaemon":
            writes.append(("storage.data_dir", get(cfg, "storage.data_dir")))
            writes.append(("download.socket", get(cfg, "download.socket")))
        writes.append(("tls.state_dir", get(cfg, "tls.state_dir")))
        for field, path in writes:
            if path is None:
                continue
            shown = box.container_path(str(path))
            if box.writable(shown):
                self.report.ok(f"{where}: {field} {shown} is on a writable volume")
            else:
                self.report.fail(f"{where}: {field} {shown} is not on a writable volume (the root filesystem is read-only)")

    def check_ports(self, where: str, binary: str, pod: Pod, c: dict, cfg: dict) -> None:
        listeners = {}
        for name, field in LISTENERS[binary].items():
            if field == "proxy.addr" and get(cfg, "proxy.enabled") is False:
                continue
            listeners[name] = (field, get(cfg, field))
        ports = {p.get("name"): p for p in c.get("ports", [])}
        for name, (field, addr) in listeners.items():
            p = ports.get(name)
            if p is None:
                self.report.fail(f"{where}: {field} {addr} has no containerPort named {name}")
            elif p["containerPort"] != port_of(addr):
                self.report.fail(f"{where}: containerPort {name} {p['containerPort']} but {field} is {addr}")
            elif "hostPort" in p and p["hostPort"] != p["containerPort"]:
                self.report.fail(f"{where}: port {name}: hostPort {p['hostPort']} differs from containerPort {p['containerPort']}")
            else:
                extra = f", hostPort {p['hostPort']}" if "hostPort" in p else ""
                self.report.ok(f"{where}: containerPort {name} {p['containerPort']}{extra} = {field} {addr}")
        for name, p in ports.items():
            if name not in listeners:
                self.report.fail(f"{where}: containerPort {name} {p['containerPort']} is no listener of {binary}")
        metrics = port_of(get(cfg, "metrics_addr"))
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if probe is None:
                self.report.fail(f"{where}: no {kind}")
                continue
            get_ = probe.get("httpGet", {})
            p = pod.named_port(get_.get("port"), c)
            if p and p["containerPort"] == metrics and get_.get("path") == "/healthz":
                self.report.ok(f"{where}: {kind} GET /healthz on {get_['port']} = metrics_addr port {metrics}")
            else:
                self.report.fail(f"{where}: {kind} {get_} is not /healthz on metrics_addr port {metrics}")

    def check_services(self) -> None:
        for svc in self.r.services:
            name = f"Service/{svc['metadata']['name']}"
            pods = [p for p in self.r.pods if svc in self.r.services_of(p)]
            if not pods:
                self.report.fail(f"{name} selects no pod of the release")
                continue
            for pod in pods:
                for sp in svc["spec"]["ports"]:
                    target = sp.get("targetPort", sp["port"])
                    cp = pod.named_port(target)
                    if cp is None:
                        self.report.fail(f"{name} port {sp.get('name')}: targetPort {target} is no container port of {pod.title}")
                    elif cp["containerPort"] != sp["port"] or cp.get("name") != sp.get("name"):
                        self.report.fail(
                            f"{name} port {sp.get('name')} {sp['port']} targets {pod.title} port "
                            f"{cp.get('name')} {cp['containerPort']} (name and number should agree)")
                    else:
                        self.report.ok(f"{name} port {sp.get('name')} {sp['port']} -> {pod.title} containerPort {cp['containerPort']}")

    def check_manager_addrs(self) -> None:
        for (title, container), cfg in self.effective.items():
            for addr in get(cfg, "manager.addrs") or []:
                host, port = str(addr).rsplit(":", 1)
                m = re.match(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.|$)", host)
                svc = next((s for s in self.r.services if m and s["metadata"]["name"] == m.group(1)
                            and s["metadata"]["namespace"] == m.group(2)), None)
                where = f"{title} {container}: manager.addrs {addr}"
                if svc is None:
                    self.report.note(f"{where} is outside this release (an external manager)")
                    continue
                sp = next((p for p in svc["spec"]["ports"] if p["port"] == int(port)), None)
                managers = [p for p in self.r.pods if svc in self.r.services_of(p)]
                grpc = [port_of(self.effective[(p.title, "manager")]["grpc_addr"])
                        for p in managers if (p.title, "manager") in self.effective]
                cp = managers[0].named_port(sp.get("targetPort", sp["port"])) if sp and managers else None
                if not grpc:
                    self.report.fail(f"{where}: the manager's own config did not pass, so its gRPC listener is unknown")
                elif cp and cp["containerPort"] == grpc[0]:
                    self.report.ok(f"{where} reaches the manager's grpc_addr port {grpc[0]} through Service/{svc['metadata']['name']}")
                else:
                    self.report.fail(f"{where} does not reach the manager's gRPC listener")


def main(path: str) -> int:
    report = Report()
    bins = bin_dir()
    for b in PREFIX:
        if not (bins / b).exists():
            print(f"  FAIL no {b} binary in {bins} (set DARTER_BIN_DIR)")
            return 1
    rendered = Rendered(pathlib.Path(path))
    checker = Checker(rendered, bins, report)
    checker.run()
    check_node_setup.run(rendered, checker.effective, bins, report)
    check_secrets.run(rendered, report)
    return report.finish()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
