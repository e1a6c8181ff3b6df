"""Checks the node set-up of a rendered value set with the real dfdaemon.

The node-setup DaemonSet's init container (dfdaemon containerd-config) is
run in a sandbox standing in for the node's /etc/containerd, twice: with a
containerd config that reads the hosts directory (exit 0, a hosts.toml per
registry naming the mirror at the dfdaemons' proxy port, reachable from
containerd: the node's loopback with host network, else the node's address
and a hostPort), and with one that does not (exit 3 naming config_path, so
that node's node-setup pod stays in Init and says why, while the dfdaemon,
a pod of its own DaemonSet, runs). The node-setup pods must run on exactly
the dfdaemon nodes. The uninstall hook must restore the same registries on
the same nodes (its init container is run after the set-up and must remove
what it wrote), and its Job wait for that DaemonSet with arguments kubectl
accepts and the RBAC to do so. With nodeSetup.runtime crio, the set-up
writes CRI-O's registries.conf drop-in instead, each registry behind its own
loopback mirror port of the dfdaemons' proxy.registry_mirrors, and the hook
removes it (NodeSetup.check_crio).
"""

import json
import os
import pathlib
import re
import subprocess
import tempfile

from manifests import Pod, Rendered
from report import Report
from sandbox import HOST_IP, Sandbox, SandboxError

ON = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{certs}"\n'
OFF = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.10"\n'


def options(args: list[str]) -> dict:
    """containerd-config's options, by name (repeatable ones as lists)."""
    out = {"--registry": [], "--insecure": [], "--ca": [], "--all": False, "--restore": False}
    it = iter(args[1:])
    for a in it:
        if a in ("--all", "--restore"):
            out[a] = True
        elif a in ("--registry", "--insecure", "--ca"):
            out[a].append(next(it))
        else:
            out[a] = next(it)
    return out


def hook(doc_or_pod) -> tuple[str, int]:
    annotations = doc_or_pod["metadata"].get("annotations", {}) if isinstance(doc_or_pod, dict) else doc_or_pod.annotations
    return annotations.get("helm.sh/hook", ""), int(annotations.get("helm.sh/hook-weight", "0"))


class NodeSetup:
    def __init__(self, r: Rendered, effective: dict, bins: pathlib.Path, report: Report):
        self.r, self.effective, self.bins, self.report = r, effective, bins, report

    def run(self) -> None:
        for pod in self.r.pods:
            for c in pod.containers(init=True):
                args = c.get("args") or []
                if args[:1] == ["containerd-config"] and "--restore" not in args:
                    self.check_setup(pod, c)

    def daemon_pod(self) -> tuple[Pod, dict, dict] | None:
        """The dfdaemon DaemonSet's pod, its daemon container and effective config."""
        for pod in self.r.pods:
            if pod.kind != "DaemonSet":
                continue
            for c in pod.containers(init=False):
                cfg = self.effective.get((pod.title, c["name"]))
                if cfg is not None and "proxy" in cfg:
                    return pod, c, cfg
        return None

    # The set-up.

    def check_setup(self, pod: Pod, c: dict) -> None:
        where = f"{pod.title} init {c['name']}"
        found = self.daemon_pod()
        if found is None:
            self.report.fail(f"{where}: no dfdaemon DaemonSet with a checked config in the release")
            return
        dpod, daemon, cfg = found
        for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
            same = pod.spec.get(key) == dpod.spec.get(key)
            (self.report.ok if same else self.report.fail)(f"{where}: same {key} as {dpod.title} (the same nodes)")
        opts = options(c["args"])
        check = opts.get("--check-containerd")
        policy = c.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        (self.report.ok if policy else self.report.fail)(
            f"{where}: terminationMessagePolicy FallbackToLogsOnError (the verdict shows in the pod's status)")
        if "--crio" in opts:
            self.check_crio(where, pod, c, dpod, cfg, opts)
            return
        self.check_mounts(where, pod, c, opts)
        self.check_mirror(where, dpod, daemon, cfg, opts)
        for host in opts["--insecure"]:
            ok = host in (cfg.get("proxy", {}).get("insecure_registries") or [])
            (self.report.ok if ok else self.report.fail)(f"{where}: --insecure {host} is in the dfdaemons' proxy.insecure_registries")
        for ca in opts["--ca"]:
            host, path = ca.split("=", 1)
            mounted = any(m["mountPath"] == path for m in daemon.get("volumeMounts", []))
            listed = any(p.endswith(path) for p in (cfg.get("back_to_source", {}).get("ca_certs") or []))
            (self.report.ok if mounted and listed else self.report.fail)(
                f"{where}: --ca {host}={path} is mounted in the dfdaemons and in their back_to_source.ca_certs")
        with tempfile.TemporaryDirectory(prefix="darter-node-") as tmp:
            box = self.sandbox(where, pod, c, pathlib.Path(tmp))
            if box is None:
                return
            certs = box.host(opts["--certs-dir"])
            if check:
                pathlib.Path(box.host(check)).write_text(ON.format(certs=certs))
            proc = self.run_setup(box, c, pathlib.Path(tmp))
            if proc.returncode != 0:
                self.report.fail(f"{where}: with containerd reading the hosts directory: exit {proc.returncode}: {proc.stderr.strip()}")
                return
            said = " (\"pulls go through the mirror\")" if check and "pulls go through the mirror" in proc.stdout else ""
            self.report.ok(f"{where}: containerd reads the hosts directory: exit 0, the pod runs{said}")
            self.check_hosts_files(where, pathlib.Path(certs), opts)
            self.check_restore(pod, box, opts)
        if check:
            self.check_mirror_off(where, pod, c, opts)
        else:
            self.report.note(f"{where}: checkContainerd off: containerd's config_path is not checked")

    # CRI-O (nodeSetup.runtime crio).

    def check_crio(self, where: str, pod: Pod, c: dict, dpod: Pod, cfg: dict, opts: dict) -> None:
        """The drop-in's directory is the node's, writable; each registry's
        mirror is a loopback port of the dfdaemons' proxy.registry_mirrors
        (host network), given to the set-up as they have it; run in a
        sandbox, the set-up writes a [[registry]] with that mirror for each
        registry, and the uninstall hook removes the file."""
        drop_in = opts["--crio"]
        folder = str(pathlib.PurePosixPath(drop_in).parent)
        vm = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == folder), None)
        host = (pod.volume(vm["name"]) or {}).get("hostPath", {}).get("path") if vm else None
        (self.report.ok if host == folder and not vm.get("readOnly") else self.report.fail)(
            f"{where}: node's {folder} mounted writable at the same path")
        for host in opts["--insecure"]:
            ok = host in (cfg.get("proxy", {}).get("insecure_registries") or [])
            (self.report.ok if ok else self.report.fail)(f"{where}: --insecure {host} is in the dfdaemons' proxy.insecure_registries")
        mirrors = {m["registry"]: m["addr"] for m in cfg.get("proxy", {}).get("registry_mirrors") or []}
        given = next((e.get("value") for e in c.get("env", []) if e["name"] == "DFDAEMON__PROXY__REGISTRY_MIRRORS"), "[]")
        same = {m["registry"]: m["addr"] for m in json.loads(given)} == mirrors
        (self.report.ok if same else self.report.fail)(
            f"{where}: DFDAEMON__PROXY__REGISTRY_MIRRORS is the dfdaemons' proxy.registry_mirrors ({given})")
        own = all(r in mirrors and mirrors[r].startswith("127.") for r in opts["--registry"])
        (self.report.ok if own and dpod.host_network else self.report.fail)(
            f"{where}: every registry has a mirror port on the node's loopback, where CRI-O reaches it (host network): {mirrors}")
        with tempfile.TemporaryDirectory(prefix="darter-node-") as tmp:
            box = self.sandbox(where, pod, c, pathlib.Path(tmp))
            if box is None:
                return
            proc = self.run_setup(box, c, pathlib.Path(tmp))
            written = pathlib.Path(box.host(drop_in))
            text = written.read_text() if written.exists() else ""
            missing = [r for r in opts["--registry"]
                       if f'prefix = "{r}"' not in text or f'location = "{mirrors.get(r)}"\ninsecure = true' not in text]
            ok = proc.returncode == 0 and not missing
            (self.report.ok if ok else self.report.fail)(
                f"{where}: writes {drop_in}, each registry behind its mirror port (exit {proc.returncode}"
                + (f"; missing {missing}: {proc.stderr.strip()}" if missing else "") + ")")
            self.check_crio_restore(pod, box, opts, written)

    def check_crio_restore(self, setup_pod: Pod, box: Sandbox, opts: dict, written: pathlib.Path) -> None:
        restores = [(p, c) for p in self.r.pods for c in p.containers(init=True)
                    if (c.get("args") or [])[:1] == ["containerd-config"] and "--restore" in c["args"]]
        for pod, c in restores:
            where = f"{pod.title} init {c['name']}"
            r = options(c["args"])
            (self.report.ok if r.get("--crio") == opts["--crio"] else self.report.fail)(
                f"{where}: restores {opts['--crio']}")
            args = [box.rewrite(a) if a.startswith("/") else a for a in c["args"]]
            proc = subprocess.run([str(self.bins / "dfdaemon"), *args], env={"PATH": "/usr/bin:/bin"},
                                  capture_output=True, text=True, timeout=60)
            ok = proc.returncode == 0 and not written.exists()
            (self.report.ok if ok else self.report.fail)(
                f"{where}: after the set-up, --restore exits {proc.returncode} and removes the drop-in it wrote")
            self.check_wait_job(pod)

    def sandbox(self, where: str, pod: Pod, c: dict, root: pathlib.Path) -> Sandbox | None:
        try:
            return Sandbox(self.r, pod, c, root)
        except SandboxError as e:
            self.report.fail(f"{where}: {e}")
            return None

    def run_setup(self, box: Sandbox, c: dict, tmp: pathlib.Path) -> subprocess.CompletedProcess:
        args = [box.expand(a) for a in c["args"]]
        args = [box.rewrite(a) if a.startswith("/") else a for a in args]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), **box.env}
        return subprocess.run([str(self.bins / "dfdaemon"), *args], env=env, capture_output=True, text=True, timeout=60)

    def check_mounts(self, where: str, pod: Pod, c: dict, opts: dict) -> None:
        wanted = [(opts["--certs-dir"], False)]
        if opts.get("--check-containerd"):
            wanted.append((str(pathlib.PurePosixPath(opts["--check-containerd"]).parent), True))
        for path, read_only in wanted:
            vm = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == path), None)
            volume = pod.volume(vm["name"]) if vm else None
            host = (volume or {}).get("hostPath", {}).get("path")
            if host == path and bool(vm.get("readOnly")) == read_only:
                self.report.ok(f"{where}: node's {path} mounted at the same path{' read-only' if read_only else ''}")
            else:
                self.report.fail(f"{where}: {path} must be the node's {path} (hostPath), mounted "
                                 f"{'read-only' if read_only else 'writable'} at the same path")

    def check_mirror(self, where: str, pod: Pod, daemon: dict, cfg: dict, opts: dict) -> None:
        mirror = opts.get("--mirror", "").replace("$(HOST_IP)", HOST_IP)
        m = re.match(r"^http://\[?([^\]/]+?)\]?:(\d+)$", mirror)
        proxy = cfg.get("proxy", {})
        if not m or proxy.get("enabled") is False:
            self.report.fail(f"{where}: --mirror {opts.get('--mirror')!r} with proxy {proxy.get('addr')} (enabled: {proxy.get('enabled')})")
            return
        host, port = m.group(1), int(m.group(2))
        addr = str(proxy["addr"])
        listen_host, listen_port = addr.rsplit(":", 1)
        listen_host = listen_host.strip("[]")
        problems = []
        if port != int(listen_port):
            problems.append(f"port {port} is not proxy.addr's {listen_port}")
        if pod.host_network:
            if not host.startswith("127.") or not (listen_host.startswith("127.") or listen_host in ("0.0.0.0", "::")):
                problems.append("with host network the mirror is the node's loopback, where proxy.addr listens")
        else:
            p = pod.named_port("proxy", daemon)
            if host != HOST_IP:
                problems.append("without host network the mirror must be the node's address (status.hostIP)")
            if listen_host not in ("0.0.0.0", "::"):
                problems.append(f"without host network proxy.addr must listen on every address, not {listen_host}")
            if not p or p.get("hostPort") != int(listen_port):
                problems.append("without host network the proxy port needs a hostPort")
        if problems:
            self.report.fail(f"{where}: --mirror {opts['--mirror']} vs proxy.addr {addr}: " + "; ".join(problems))
        else:
            how = "node loopback, host network" if pod.host_network else "node address, hostPort"
            self.report.ok(f"{where}: --mirror {opts['--mirror']} reaches proxy.addr {addr} ({how})")

    def check_hosts_files(self, where: str, certs: pathlib.Path, opts: dict) -> None:
        mirror = opts["--mirror"].replace("$(HOST_IP)", HOST_IP)
        dirs = list(opts["--registry"]) + (["_default"] if opts["--all"] else [])
        cas = dict(ca.split("=", 1) for ca in opts["--ca"])
        for d in dirs:
            f = certs / d / "hosts.toml"
            text = f.read_text() if f.exists() else ""
            ok = f'[host."{mirror}"]' in text and (d not in cas or f'ca = "{cas[d]}"' in text)
            (self.report.ok if ok else self.report.fail)(
                f"{where}: {d}/hosts.toml sends pulls to {mirror}" + (f" with ca {cas[d]}" if d in cas else ""))

    def check_mirror_off(self, where: str, pod: Pod, c: dict, opts: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="darter-node-") as tmp:
            box = self.sandbox(where, pod, c, pathlib.Path(tmp))
            if box is None:
                return
            pathlib.Path(box.host(opts["--check-containerd"])).write_text(OFF)
            proc = self.run_setup(box, c, pathlib.Path(tmp))
            written = all((pathlib.Path(box.host(opts["--certs-dir"])) / r / "hosts.toml").exists() for r in opts["--registry"])
            ok = proc.returncode == 3 and "config_path" in proc.stderr and written
            (self.report.ok if ok else self.report.fail)(
                f"{where}: containerd ignoring the hosts directory: exit {proc.returncode}, the files written, "
                f"the log names config_path (the node-setup pod stays in Init; the dfdaemon runs)")

    # The uninstall hook.

    def check_restore(self, setup_pod: Pod, box: Sandbox, opts: dict) -> None:
        restores = [(p, c) for p in self.r.pods for c in p.containers(init=True)
                    if (c.get("args") or [])[:1] == ["containerd-config"] and "--restore" in c["args"]]
        if not restores:
            self.report.note(f"{setup_pod.title}: no uninstall restore hook (nodeSetup.restore.enabled false)")
            return
        for pod, c in restores:
            where = f"{pod.title} init {c['name']}"
            kind, weight = hook(pod)
            (self.report.ok if kind == "pre-delete" else self.report.fail)(f"{where}: a pre-delete hook (weight {weight})")
            r = options(c["args"])
            same = all(r.get(k) == opts.get(k) for k in ("--registry", "--all", "--certs-dir"))
            (self.report.ok if same else self.report.fail)(
                f"{where}: restores the registries the set-up wrote: {', '.join(r['--registry'])}{' and _default' if r['--all'] else ''}")
            for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
                same = pod.spec.get(key) == setup_pod.spec.get(key)
                (self.report.ok if same else self.report.fail)(f"{where}: same {key} as {setup_pod.title}")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            setup_mounts = {m[0] for m in box.mounts}
            (self.report.ok if mounts == setup_mounts else self.report.fail)(f"{where}: mounts the same node paths as the set-up")
            args = [box.rewrite(a) if a.startswith("/") else a for a in c["args"]]
            proc = subprocess.run([str(self.bins / "dfdaemon"), *args], env={"PATH": "/usr/bin:/bin"},
                                  capture_output=True, text=True, timeout=60)
            certs = pathlib.Path(box.host(opts["--certs-dir"]))
            left = [d for d in r["--registry"] + (["_default"] if r["--all"] else []) if (certs / d / "hosts.toml").exists()]
            ok = proc.returncode == 0 and not left
            (self.report.ok if ok else self.report.fail)(
                f"{where}: after the set-up, --restore exits {proc.returncode} and leaves no hosts.toml it wrote"
                + (f" (left: {left})" if left else ""))
            self.check_wait_job(pod)

    def check_wait_job(self, restore: Pod) -> None:
        jobs = [p for p in self.r.pods if p.kind == "Job" and hook(p)[0] == "pre-delete"]
        if len(jobs) != 1:
            self.report.fail(f"{restore.title}: expected one pre-delete Job waiting for it, found {len(jobs)}")
            return
        job = jobs[0]
        c = job.containers(init=False)[0]
        args = c.get("args") or []
        where = f"{job.title} {c['name']}"
        wanted = ["rollout", "status", f"daemonset/{restore.workload}"]
        ok = pathlib.PurePosixPath(c["command"][0]).name == "kubectl" and args[:3] == wanted \
            and f"--namespace={restore.namespace}" in args
        (self.report.ok if ok else self.report.fail)(f"{where}: kubectl {' '.join(args)}")
        weights = hook(job)[1], hook(restore)[1]
        (self.report.ok if weights[0] > weights[1] else self.report.fail)(
            f"{where}: runs after the restore DaemonSet exists (hook weights {weights[1]} < {weights[0]})")
        kubectl = os.environ.get("DARTER_KUBECTL")
        if kubectl:
            proc = subprocess.run(
                [kubectl, *args, "--server=http://127.0.0.1:1", "--token=placeholder", "--request-timeout=3s"],
                env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "KUBECONFIG": "/dev/null"},
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
            out = proc.stdout + proc.stderr
            ok = proc.returncode != 0 and "refused" in out and not re.search(r"unknown (flag|command|shorthand)", out)
            (self.report.ok if ok else self.report.fail)(
                f"{where}: kubectl accepts the arguments (it gets as far as dialling the API server): {out.strip()[:120]}")
        else:
            self.report.note(f"{where}: DARTER_KUBECTL unset, the arguments were not given to kubectl")
        self.check_rbac(job, restore)

    def check_rbac(self, job: Pod, restore: Pod) -> None:
        where = f"{job.title}"
        sa = job.spec.get("serviceAccountName")
        bindings = [b for b in self.r.kind("RoleBinding")
                    if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in b["subjects"])]
        roles = {r["metadata"]["name"]: r for r in self.r.kind("Role")}
        allowed = set()
        for b in bindings:
            for rule in roles.get(b["roleRef"]["name"], {}).get("rules", []):
                if "apps" in rule.get("apiGroups", []) and "daemonsets" in rule.get("resources", []) \
                        and restore.workload in rule.get("resourceNames", [restore.workload]):
                    allowed |= set(rule.get("verbs", []))
        ok = {"get", "watch"} <= allowed and job.spec.get("automountServiceAccountToken") is True
        (self.report.ok if ok else self.report.fail)(
            f"{where}: ServiceAccount {sa} may get and watch daemonset/{restore.workload} and its token is mounted")
        hooked = [d for d in self.r.docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
                  and d["metadata"]["name"] == sa]
        early = all(hook(d)[0] == "pre-delete" and hook(d)[1] < hook(restore)[1] for d in hooked) and len(hooked) == 3
        (self.report.ok if early else self.report.fail)(f"{where}: its ServiceAccount, Role and RoleBinding are pre-delete hooks made first")


def run(r: Rendered, effective: dict, bins: pathlib.Path, report: Report) -> None:
    NodeSetup(r, effective, bins, report).run()
