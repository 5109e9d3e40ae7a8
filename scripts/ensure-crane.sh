#!/usr/bin/env bash
# Builds go-containerregistry's `crane` (assembles, inspects and pushes OCI images without a
# container engine) once from the Go module proxy, into a cache outside the repo keyed by version,
# and links it at .toolchain/bin/crane. Prints the path of the binary.
set -euo pipefail
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
CACHE="${SWITCHYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$CACHE/crane-$CRANE_VERSION"
bin="$dir/crane"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "crane: Go is required to build crane $CRANE_VERSION (go.dev/dl)" >&2; exit 1; }
  echo "crane: building github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION into $dir" >&2
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/.crane-$CRANE_VERSION.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # Lowest priority: the machine's cores are shared with test runs.
  GOBIN="$tmp" CGO_ENABLED=0 nice -n 19 go install -trimpath -ldflags "-s -w" \
    "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" ||
    { echo "crane: could not build crane $CRANE_VERSION from the Go module proxy" >&2; exit 1; }
  rm -rf "$dir" && mkdir -p "$(dirname "$dir")" && mv "$tmp" "$dir" && trap - EXIT
fi
"$bin" version >/dev/null 2>&1 || { echo "crane: $bin does not run" >&2; exit 1; }
mkdir -p "$root/.toolchain/bin"
ln -sfn "$bin" "$root/.toolchain/bin/crane"
echo "$root/.toolchain/bin/crane"
