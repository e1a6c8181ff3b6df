"""Validates rendered manifests against Kubernetes' own schemas.

    validate_manifests.py RENDERED.yaml K8S_VERSION...

Built-in kinds go through `kubernetes-validate --strict` (unknown fields are
errors) for every Kubernetes version given. The custom resources the chart
renders (cert-manager's Certificate and Issuer, the Prometheus Operator's
ServiceMonitor) have no schema there: kubernetes-validate only warns about
them, so each such warning is accepted only for those kinds, said so, and the
documents are validated here against the strict schemas in crd-schemas/.
Any other warning (a kind or apiVersion it does not know) fails.
"""

import json
import pathlib
import re
import subprocess
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
CRDS = {
    ("cert-manager.io/v1", "Certificate"): "certificate.json",
    ("cert-manager.io/v1", "Issuer"): "issuer.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
}
WARN = re.compile(r"^WARN .*Couldn't find schema for kind (\S+) with api version (\S+) for kubernetes version (\S+)$")


def main(rendered: str, versions: list[str]) -> int:
    failures = 0
    args = ["kubernetes-validate", "--strict", "--quiet"]
    for v in versions:
        args += ["-k", v]
    run = subprocess.run(args + [rendered], capture_output=True, text=True)
    seen_crds = set()
    for line in (run.stdout + run.stderr).splitlines():
        m = WARN.match(line)
        if m and (m.group(2), m.group(1)) in CRDS:
            seen_crds.add((m.group(2), m.group(1), m.group(3)))
        elif line.strip():
            print(f"  FAIL kubernetes-validate: {line}")
            failures += 1
    if run.returncode != 0 and failures == 0:
        print(f"  FAIL kubernetes-validate exited {run.returncode}")
        failures += 1
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    builtin = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRDS]
    if failures == 0:
        print(f"  ok   kubernetes-validate --strict: {len(builtin)} objects against Kubernetes {', '.join(versions)}")
    for api, kind, version in sorted(seen_crds):
        print(f"  note kubernetes-validate has no schema for {kind} ({api}) in {version}: checked against crd-schemas/{CRDS[(api, kind)]}")
    for d in docs:
        schema_file = CRDS.get((d["apiVersion"], d["kind"]))
        if not schema_file:
            continue
        schema = json.loads((HERE / "crd-schemas" / schema_file).read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(d), key=lambda e: list(e.path))
        name = f"{d['kind']}/{d['metadata']['name']}"
        for e in errors:
            path = ".".join(str(p) for p in e.path)
            print(f"  FAIL {name}: {path}: {e.message}")
            failures += 1
        if not errors:
            print(f"  ok   {name} matches crd-schemas/{schema_file}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
