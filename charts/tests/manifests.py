"""The rendered chart as objects: ConfigMaps, Secrets, Services, and the pods
its workloads would run, with the lookups the checks share (named ports,
which Services select which pods)."""

import base64
import pathlib
from dataclasses import dataclass, field

import yaml

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


@dataclass
class Pod:
    """One pod a workload would run (its first replica)."""

    kind: str
    workload: str
    namespace: str
    name: str
    spec: dict
    labels: dict
    annotations: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.kind}/{self.workload}"

    @property
    def host_network(self) -> bool:
        return bool(self.spec.get("hostNetwork"))

    def containers(self, init: bool | None = None) -> list[dict]:
        out = []
        if init in (None, True):
            out += self.spec.get("initContainers", [])
        if init in (None, False):
            out += self.spec.get("containers", [])
        return out

    def volume(self, name: str) -> dict | None:
        for v in self.spec.get("volumes", []):
            if v["name"] == name:
                return v
        return None

    def named_port(self, ref, container: dict | None = None) -> dict | None:
        """The containerPort a probe or Service names (by name or number)."""
        for c in [container] if container else self.containers(init=False):
            for p in c.get("ports", []):
                if ref == p.get("name") or ref == p["containerPort"]:
                    return p
        return None


class Rendered:
    """Every object of one `helm template` output."""

    def __init__(self, path: pathlib.Path):
        self.docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        self.configmaps = {d["metadata"]["name"]: d for d in self.docs if d["kind"] == "ConfigMap"}
        self.secrets = {d["metadata"]["name"]: d for d in self.docs if d["kind"] == "Secret"}
        self.services = [d for d in self.docs if d["kind"] == "Service"]
        self.pods = [self._pod(d) for d in self.docs if d["kind"] in WORKLOADS]

    @staticmethod
    def _pod(d: dict) -> Pod:
        name = d["metadata"]["name"]
        pod_name = {
            "StatefulSet": f"{name}-0",
            "Deployment": f"{name}-5d8f7c9b6-x2kq7",
            "DaemonSet": f"{name}-q8x2n",
            "Job": f"{name}-7vz4m",
        }[d["kind"]]
        template = d["spec"]["template"]
        return Pod(
            kind=d["kind"],
            workload=name,
            namespace=d["metadata"]["namespace"],
            name=pod_name,
            spec=template["spec"],
            labels=template["metadata"].get("labels", {}),
            annotations=d["metadata"].get("annotations", {}),
        )

    def kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def configmap_data(self, name: str) -> dict | None:
        cm = self.configmaps.get(name)
        return None if cm is None else {k: v.encode() for k, v in (cm.get("data") or {}).items()}

    def secret_data(self, name: str) -> dict | None:
        s = self.secrets.get(name)
        if s is None:
            return None
        data = {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (s.get("stringData") or {}).items()})
        return data

    def services_of(self, pod: Pod) -> list[dict]:
        """Services in the pod's namespace whose selector matches its labels."""
        out = []
        for s in self.services:
            selector = s["spec"].get("selector") or {}
            if s["metadata"]["namespace"] == pod.namespace and selector and all(
                pod.labels.get(k) == v for k, v in selector.items()
            ):
                out.append(s)
        return out
