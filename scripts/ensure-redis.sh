#!/usr/bin/env bash
# Debian's redis-server, which the member-limit tests start (two AI extensions sharing counts).
# Installed with apt-get when missing (CI runs as root); links it at .toolchain/bin/redis-server.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(command -v redis-server || true)"
if [ -z "$bin" ]; then
  [ "$(id -u)" = 0 ] || { echo "redis: redis-server is missing; install it: sudo apt-get install -y redis-server" >&2; exit 1; }
  echo "redis: installing Debian's redis-server" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >/dev/null; } ||
    { echo "redis: apt-get could not install redis-server" >&2; exit 1; }
  bin="$(command -v redis-server)"
fi
"$bin" --version >/dev/null || { echo "redis: $bin does not run" >&2; exit 1; }
mkdir -p "$root/.toolchain/bin"
ln -sfn "$bin" "$root/.toolchain/bin/redis-server"
echo "$root/.toolchain/bin/redis-server"
