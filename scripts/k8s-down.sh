#!/usr/bin/env bash
# Stops the local control plane started by scripts/k8s-up.sh (kube-apiserver, then etcd) and
# removes its state: .k8s/data, .k8s/run and the kubeconfig/env that point at it. Keeps .k8s/bin
# and .k8s/logs. Only processes named in .k8s/run/*.pid that run a binary from .k8s/ are stopped.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
k8s="$root/.k8s"
run="$k8s/run"

if [ -z "${K8S_DOWN_LOCKED:-}" ] && [ -d "$k8s" ]; then
  exec 9>"$k8s/.lock"
  flock 9
fi

ours() { # ours PID: is it alive and one of our components?
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$k8s/"
}

stopped=""
for name in kube-apiserver etcd; do
  pid="$(cat "$run/$name.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && ours "$pid" || continue
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do ours "$pid" || break; sleep 0.1; done
  if ours "$pid"; then
    echo "k8s-down: $name ($pid) ignored SIGTERM for 10s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do ours "$pid" || break; sleep 0.1; done
  fi
  stopped+=" $name"
done

rm -rf "$k8s/data" "$run" "$k8s/kubeconfig" "$k8s/env"
echo "k8s-down: ${stopped:+stopped$stopped; }removed .k8s/data and .k8s/run" >&2
