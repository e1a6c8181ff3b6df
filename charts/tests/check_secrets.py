"""What a node can read: a kubelet can fetch every Secret that a pod on its
node references, whole (not only the items the pod mounts). So, in one
rendered value set:
  - no pod but the manager's references a manager-only Secret: one the
    manager mounts the CA's key (tls.key) or the bootstrap tokens file
    from, a Secret with bootstrap-tokens.yaml, or the Secret of a
    cert-manager Certificate with isCA;
  - no member (scheduler, seed peer, dfdaemon) references a Secret holding
    another role's join token, and no two roles mount their token from the
    same Secret;
  - a dfdaemon pod (on every node) references no Secret besides its own peer
    token and, for the CA certificate, Secrets it mounts only ca.crt from;
  - other pods (node set-up, uninstall hook) reference no Secret.
Each check prints one line (report.py)."""

import yaml

from manifests import Pod, Rendered


def _binaries(pod: Pod) -> set[str]:
    from check_rendered import binary_of
    return {b for c in pod.containers(init=False) if (b := binary_of(c))}


def role_of(pod: Pod) -> str | None:
    b = _binaries(pod)
    if "manager" in b:
        return "manager"
    if "scheduler" in b:
        return "scheduler"
    if "dfdaemon" in b:
        return "seed_peer" if pod.kind == "StatefulSet" else "peer"
    return None


def secret_refs(pod: Pod) -> dict[str, set[str] | None]:
    """Secret name -> the keys the pod takes from it (None: all of it)."""
    refs: dict[str, set[str] | None] = {}

    def add(name: str, keys):
        if name in refs and refs[name] is None:
            return
        if keys is None:
            refs[name] = None
        else:
            refs.setdefault(name, set()).update(keys)

    for v in pod.spec.get("volumes", []):
        if "secret" in v:
            items = v["secret"].get("items")
            add(v["secret"]["secretName"], [i["key"] for i in items] if items else None)
        for src in v.get("projected", {}).get("sources", []):
            if "secret" in src:
                items = src["secret"].get("items")
                add(src["secret"]["name"], [i["key"] for i in items] if items else None)
    for c in pod.containers():
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                add(ref["name"], [ref["key"]])
        for ef in c.get("envFrom", []):
            if "secretRef" in ef:
                add(ef["secretRef"]["name"], None)
    return refs


def join_token_ref(pod: Pod) -> tuple[str, str] | None:
    v = pod.volume("join-token")
    if not v or "secret" not in v:
        return None
    items = v["secret"].get("items") or [{"key": None}]
    return v["secret"]["secretName"], items[0]["key"]


def run(r: Rendered, report) -> None:
    pods = [(p, role_of(p)) for p in r.pods]
    manager_only: set[str] = set()
    for d in r.kind("Certificate"):
        if d["spec"].get("isCA"):
            manager_only.add(d["spec"]["secretName"])
    for name in r.secrets:
        if "bootstrap-tokens.yaml" in (r.secret_data(name) or {}):
            manager_only.add(name)
    for p, role in pods:
        if role == "manager":
            for name, keys in secret_refs(p).items():
                if keys is None or keys & {"tls.key", "bootstrap-tokens.yaml"}:
                    manager_only.add(name)

    # token -> role: the manager's bootstrap file, and what each member mounts.
    token_role: dict[str, str] = {}
    for name in r.secrets:
        boot = (r.secret_data(name) or {}).get("bootstrap-tokens.yaml")
        for entry in yaml.safe_load(boot) or [] if boot else []:
            token_role[entry["token"]] = entry["role"]
    token_secret_roles: dict[str, set[str]] = {}
    for p, role in pods:
        ref = join_token_ref(p)
        if role in (None, "manager") or not ref:
            continue
        token_secret_roles.setdefault(ref[0], set()).add(role)
        data = r.secret_data(ref[0])
        if data and ref[1] in data:
            token_role.setdefault(data[ref[1]].decode().strip(), role)

    for name, roles in sorted(token_secret_roles.items()):
        if len(roles) > 1:
            report.fail(f"Secret {name} holds the join tokens of {sorted(roles)}: each role needs a Secret of its own")
        else:
            report.ok(f"Secret {name} is the join token of {next(iter(roles))} only")

    for p, role in pods:
        if role == "manager":
            continue
        refs = secret_refs(p)
        own = join_token_ref(p)
        bad = []
        for name, keys in sorted(refs.items()):
            if name in manager_only:
                bad.append(f"{name} (manager only: the CA key or the bootstrap tokens)")
                continue
            data = r.secret_data(name) or {}
            others = sorted({token_role[t] for t in token_role if token_role[t] != role
                             and any(t.encode() in v for v in data.values())})
            if others:
                bad.append(f"{name} (join token of {', '.join(others)})")
                continue
            if role is None:
                bad.append(f"{name} (this pod needs no Secret)")
            elif role == "peer" and not (own and name == own[0]) and keys != {"ca.crt"}:
                bad.append(f"{name} (keys {sorted(keys) if keys else 'all'}: a dfdaemon may reference its peer token and CA certificates only)")
        if bad:
            report.fail(f"{p.title} ({role or 'no member'}) references Secrets a node must not read: {'; '.join(bad)}")
        else:
            report.ok(f"{p.title} ({role or 'no member'}) references only its own Secrets: {sorted(refs) or 'none'}")
