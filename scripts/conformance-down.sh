#!/usr/bin/env bash
# Stops what scripts/conformance.sh started, newest first: the suite, the switchyard controller,
# the node agent (which stops its pods and removes their network namespaces and the bridge),
# kube-controller-manager, then the control plane (scripts/k8s-down.sh). Only processes named in
# .k8s/run/*.pid are signalled, and Envoys still running from .k8s/conformance (a controller killed
# before its drain). Then removes any pod network the agent left behind (a killed agent
# cannot clean up): network namespaces syc-*, veths syc h*, bridge sy-conf0. Root only.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
k8s="$root/.k8s"
run="$k8s/run"
bridge="${CONFORMANCE_BRIDGE:-sy-conf0}"

stop_one() { # stop_one NAME SECONDS: SIGTERM to the process group of .k8s/run/NAME.pid, SIGKILL after SECONDS
  local name="$1" limit="$2" pid i
  pid="$(cat "$run/$name.pid" 2>/dev/null)" || return 0
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { rm -f "$run/$name.pid"; return 0; }
  # Each was started with setsid: its pid is its process group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((limit * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "conformance-down: $name ($pid) still running after ${limit}s; killing it" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$run/$name.pid"
  stopped+=" $name"
}

stopped=""
stop_one controller 10
stop_one node-agent 30
stop_one kube-controller-manager 10

left=""
# The controller drains and stops the Envoys it ran (--infrastructure host). One killed before it
# could (SIGKILL above) leaves them running: stop those, by their bootstrap under .k8s/conformance.
for pid in $(pgrep -f -- "-c $k8s/conformance/.*/bootstrap.json" 2>/dev/null); do
  kill -TERM "$pid" 2>/dev/null && left+=" envoy($pid)"
done
for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^syc-/ { print $1 }'); do
  ip netns del "$ns" 2>/dev/null && left+=" $ns"
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{ split($2, a, "@"); if (a[1] ~ /^syc/) print a[1] }'); do
  ip link del "$link" 2>/dev/null && left+=" $link"
done
ip link show dev "$bridge" >/dev/null 2>&1 && ip link del "$bridge" 2>/dev/null && left+=" $bridge"
[ -z "$left" ] || echo "conformance-down: stopped or removed what was left behind (a controller or node agent that could not clean up):$left" >&2

"$root/scripts/k8s-down.sh"
echo "conformance-down: ${stopped:+stopped$stopped; }done" >&2
