"""A container's view of its files and environment, rebuilt in a temporary
directory, so the real binary can read its config as the pod would.

Every volume mount of the container becomes a directory (or file) under the
sandbox root, filled from the rendered ConfigMaps and Secrets; objects the
chart does not render (made by the operator, or by cert-manager) get
placeholder contents, and are reported. Paths under a mount are rewritten to
the sandbox in config files, arguments and environment values. The
environment is expanded the way the kubelet does ($(VAR) of earlier
variables, $$ for a literal $), with the downward API's fields given fixed
example values.
"""

import pathlib
import re

import yaml

from manifests import Pod, Rendered

NODE_NAME = "node-1"
HOST_IP = "10.0.0.11"
POD_IP = "10.244.1.23"

# Contents for keys of objects the chart does not render.
CERT_PLACEHOLDER = b"-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n"
PLACEHOLDERS = {
    "scheduler": b"abcdef.0123456789abcdef",
    "seed_peer": b"bcdefg.0123456789abcdef",
    "peer": b"cdefgh.0123456789abcdef",
    "token": b"abcdef.0123456789abcdef",
    "ca.crt": CERT_PLACEHOLDER,
    "tls.crt": CERT_PLACEHOLDER,
    "tls.key": b"-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n",
    "database_url": b"postgres://darter:placeholder@postgres:5432/darter",
    "redis_url": b"redis://:placeholder@redis:6379/0",
    "password": b"placeholder-password",
}
WRITABLE_KINDS = ("emptyDir", "hostPath", "persistentVolumeClaim", "volumeClaimTemplate")


class SandboxError(Exception):
    """The pod spec cannot be satisfied (a missing key, an unknown volume)."""


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined variables are replaced, $$ is
    a literal $, anything else stays as written."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(env[name] if name in env else text[i : close + 1])
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


class Sandbox:
    """The files and environment of one container of `pod`."""

    def __init__(self, rendered: Rendered, pod: Pod, container: dict, root: pathlib.Path):
        self.rendered = rendered
        self.pod = pod
        self.container = container
        self.root = root
        self.mounts: list[tuple[str, dict, bool]] = []  # (mountPath, volume, readOnly)
        self.external: set[str] = set()
        self._materialize()
        self.env = self._environment()

    # Files.

    def _materialize(self) -> None:
        for vm in self.container.get("volumeMounts", []):
            if vm.get("subPath") or vm.get("subPathExpr"):
                raise SandboxError(f"volume mount {vm['name']}: subPath is not supported by the checks")
            volume = self.pod.volume(vm["name"])
            if volume is None:
                if self.pod.kind == "StatefulSet" and vm["name"] in self._claim_templates():
                    volume = {"name": vm["name"], "volumeClaimTemplate": {}}
                else:
                    raise SandboxError(f"volume mount {vm['name']} names no volume of the pod")
            self.mounts.append((vm["mountPath"], volume, bool(vm.get("readOnly"))))
            dest = self.root / vm["mountPath"].lstrip("/")
            files = self._files(volume)
            if volume.get("hostPath", {}).get("type") == "File":
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(CERT_PLACEHOLDER)
                continue
            dest.mkdir(parents=True, exist_ok=True)
            for rel, content in files.items():
                f = dest / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(content)
        # Longest mount first, so nested mounts win when paths are rewritten.
        self.mounts.sort(key=lambda m: -len(m[0]))

    def _claim_templates(self) -> set[str]:
        for d in self.rendered.kind("StatefulSet"):
            if d["metadata"]["name"] == self.pod.workload:
                return {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
        return set()

    def _files(self, volume: dict) -> dict[str, bytes]:
        if "configMap" in volume:
            return self._object_files("ConfigMap", volume["configMap"]["name"], volume["configMap"].get("items"))
        if "secret" in volume:
            return self._object_files("Secret", volume["secret"]["secretName"], volume["secret"].get("items"))
        if "projected" in volume:
            files = {}
            for source in volume["projected"]["sources"]:
                if "secret" in source:
                    files.update(self._object_files("Secret", source["secret"]["name"], source["secret"].get("items")))
                elif "configMap" in source:
                    files.update(self._object_files("ConfigMap", source["configMap"]["name"], source["configMap"].get("items")))
                else:
                    raise SandboxError(f"projected volume {volume['name']}: unsupported source {sorted(source)}")
            return files
        if any(k in volume for k in WRITABLE_KINDS):
            return {}
        raise SandboxError(f"volume {volume['name']}: unsupported kind {sorted(volume)}")

    def _object_files(self, kind: str, name: str, items: list | None) -> dict[str, bytes]:
        data = self.rendered.configmap_data(name) if kind == "ConfigMap" else self.rendered.secret_data(name)
        if data is None:
            self.external.add(f"{kind} {name}")
            keys = [i["key"] for i in items] if items else ["placeholder"]
            data = {k: PLACEHOLDERS.get(k, b"placeholder") for k in keys}
        if not items:
            return dict(data)
        files = {}
        for item in items:
            if item["key"] not in data:
                raise SandboxError(f"{kind} {name} has no key {item['key']!r}")
            files[item["path"]] = data[item["key"]]
        return files

    # Paths.

    def mount_of(self, path: str) -> tuple[str, dict, bool] | None:
        """The mount a container path lies under (the innermost one)."""
        for mount in self.mounts:
            if path == mount[0] or path.startswith(mount[0].rstrip("/") + "/"):
                return mount
        return None

    def host(self, path: str) -> str:
        """Where a container path is in the sandbox (unchanged if unmounted)."""
        if path.startswith("/") and self.mount_of(path):
            return str(self.root) + path
        return path

    def container_path(self, path: str) -> str:
        """The inverse of host()."""
        prefix = str(self.root)
        return path[len(prefix) :] if path.startswith(prefix + "/") else path

    def rewrite(self, value):
        """Paths under mounts rewritten to the sandbox, in a config value,
        an argument or an environment value (sqlite:// URLs included)."""
        if isinstance(value, dict):
            return {k: self.rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        if isinstance(value, str):
            m = re.match(r"^(sqlite://)(/[^?]*)(.*)$", value)
            if m:
                return m.group(1) + self.host(m.group(2)) + m.group(3)
            return self.host(value)
        return value

    def writable(self, path: str) -> bool:
        mount = self.mount_of(path)
        return bool(mount) and not mount[2] and any(k in mount[1] for k in WRITABLE_KINDS)

    # Environment.

    def _field(self, path: str) -> str:
        return {
            "metadata.name": self.pod.name,
            "metadata.namespace": self.pod.namespace,
            "spec.nodeName": NODE_NAME,
            "status.hostIP": HOST_IP,
            "status.podIP": HOST_IP if self.pod.host_network else POD_IP,
        }[path]

    def _environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in self.container.get("env", []):
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
                continue
            source = e["valueFrom"]
            if "fieldRef" in source:
                env[e["name"]] = self._field(source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
                ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
                files = self._object_files(kind, ref["name"], [{"key": ref["key"], "path": "v"}])
                env[e["name"]] = files["v"].decode()
            else:
                raise SandboxError(f"env {e['name']}: unsupported source {sorted(source)}")
        return env

    def expand(self, text: str) -> str:
        return expand(text, self.env)

    def command(self, binary: pathlib.Path, edit=None) -> tuple[list[str], dict[str, str]]:
        """The container's command line and environment against the sandbox:
        its --config file copied with paths moved in (and `edit` applied to
        the parsed config), arguments and environment expanded and moved in."""
        args = [self.expand(a) for a in self.container.get("args") or []]
        if "--config" in args:
            host_config = pathlib.Path(self.host(args[args.index("--config") + 1]))
            cfg = self.rewrite(yaml.safe_load(host_config.read_text()))
            if edit:
                edit(cfg)
            host_config.write_text(yaml.safe_dump(cfg))
        args = [self.rewrite(a) if a.startswith("/") else a for a in args]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.root), **{k: self.rewrite(v) for k, v in self.env.items()}}
        return [str(binary), *args], env
