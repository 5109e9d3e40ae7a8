#!/usr/bin/env bash
# Runs the official Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance, the version
# in hack/k8s/conformance, unmodified, with its own base manifests) against Switchyard on this
# machine, without Docker or a kubelet:
#   1. tools      scripts/k8s-tools.sh conformance (kube-controller-manager, conformance.test,
#                 echo-basic, coredns; built once from the Go module proxy and cached)
#   2. cluster    a fresh scripts/k8s-up.sh (etcd + kube-apiserver + CRDs) plus
#                 kube-controller-manager (namespaces, Deployments/ReplicaSets, EndpointSlices, GC,
#                 service accounts)
#   3. node       test/conformance/node-agent.ts: one Node; binds pods to it and runs them as local
#                 processes, each in its own network namespace on bridge sy-conf0 with the node
#                 address A.B.C.1 of CONFORMANCE_SUBNET (default 198.51.100.0/24, TEST-NET-2); pods
#                 get A.B.C.2-126; A.B.C.128/25 is left for Gateway addresses (Host infra provider)
#   4. smoke      two echo-basic pods behind a Service: each answers on <podIP>:3000 from the host
#                 and the EndpointSlice lists both (skip: CONFORMANCE_SMOKE=0)
#   5. controller `switchyard controller` in the background, GatewayClass switchyard
#   6. suite      conformance.test -gateway-class=switchyard -conformance-profiles=GATEWAY-HTTP,
#                 report in conformance/reports/<version>/switchyard.yaml
# Everything it started is stopped on exit (processes, network namespaces, the bridge, the control
# plane) unless CONFORMANCE_KEEP=1.
#
# Root only (network namespaces, veth pairs, mounts): CI runs as root. One run per machine at a
# time: the bridge name and the subnet are global. Not TEST-NET-1: this sandbox's own uplink is
# 192.0.2.0/24 (the agent refuses a subnet any host route overlaps).
#
# Environment:
#   CONFORMANCE_RUN_TEST=Name     run one test (the suite's -run-test; bypasses feature gating)
#   CONFORMANCE_SKIP_TESTS=A,B    the suite's -skip-tests
#   CONFORMANCE_SUPPORTED_FEATURES=...  the suite's -supported-features. Unset: the suite reads the
#                                 GatewayClass status.supportedFeatures; when that is empty (the
#                                 suite would stop at once: "no supported features were
#                                 determined") the core set Gateway,HTTPRoute is passed instead
#   CONFORMANCE_TIMEOUT=60m       the go test timeout for the whole suite
#   CONFORMANCE_DEBUG=1           the suite's -debug (request/response dumps)
#   CONFORMANCE_KEEP=1            leave everything running for inspection (stop: scripts/conformance-down.sh)
#   CONFORMANCE_SMOKE=0           skip step 4
#   CONFORMANCE_SUBNET=A.B.C.0/24 the pod and Gateway subnet (default 198.51.100.0/24)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
k8s="$root/.k8s"
bin="$k8s/bin"
run="$k8s/run"
logs="$k8s/logs"
state="$k8s/conformance"
kubeconfig="$k8s/kubeconfig"
export PATH="$root/.toolchain/bin:$PATH"
export CONFORMANCE_SUBNET="${CONFORMANCE_SUBNET:-198.51.100.0/24}"

t_start=$SECONDS
stage_t=$SECONDS
say() { echo "conformance: $*" >&2; }
stage() { # stage NAME: prints the previous stage's time and the new stage
  say "[$(printf '%4ds' $((SECONDS - t_start)))] $*"
  stage_t=$SECONDS
}
took() { say "        done in $((SECONDS - stage_t))s"; }
die() { say "FAILED: $*"; exit 1; }
show_log() { [ -s "$logs/$1.log" ] && { echo "---- last lines of .k8s/logs/$1.log ----" >&2; tail -n "${2:-30}" "$logs/$1.log" >&2; echo "----" >&2; }; return 0; }
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

[ "$(id -u)" -eq 0 ] || die "needs root: pods run in network namespaces joined by veth pairs to a bridge"
for c in ip mount unshare curl; do command -v "$c" >/dev/null || die "$c is required"; done

# ---- cleanup -------------------------------------------------------------------------------------
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${CONFORMANCE_KEEP:-}" ] && [ "${CONFORMANCE_KEEP}" != 0 ]; then
    say "CONFORMANCE_KEEP: left running (KUBECONFIG=$kubeconfig); stop with scripts/conformance-down.sh"
    exit "$rc"
  fi
  "$root/scripts/conformance-down.sh" || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# TypeScript runs as `node --import tsx`, one process: the `tsx` wrapper relays a signal to its child
# and SIGKILLs the child when it has not acknowledged the signal within 30 ms (under load it often
# has not), which killed the controller in the middle of draining its Envoys and the node agent
# before it removed its pods' network namespaces.
start_bg() { # start_bg NAME CMD...: in its own session, pid in .k8s/run/NAME.pid, output in .k8s/logs/NAME.log
  local name="$1"; shift
  : > "$logs/$name.log"
  setsid "$@" </dev/null >>"$logs/$name.log" 2>&1 &
  echo $! > "$run/$name.pid"
}
alive() { local pid; pid="$(cat "$run/$1.pid" 2>/dev/null)" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
wait_until() { # wait_until SECONDS NAME DESCRIPTION CHECK...: NAME is the background process that must stay up
  local limit="$1" name="$2" what="$3"; shift 3
  local deadline=$((SECONDS + limit))
  until "$@"; do
    [ -z "$name" ] || alive "$name" || { show_log "$name" 60; die "$name exited while waiting for $what"; }
    [ "$SECONDS" -lt "$deadline" ] || { [ -z "$name" ] || show_log "$name" 60; die "$what: not after ${limit}s"; }
    sleep 0.5
  done
}

# ---- 1. tools --------------------------------------------------------------------------------------
stage "1/6 tools (scripts/k8s-tools.sh conformance; a cold build takes several minutes)"
"$root/scripts/k8s-tools.sh" conformance
scripts/ensure-node.sh >/dev/null
took
GWAPI_VERSION="$(sed -n 's/^GATEWAY_API_VERSION=//p' "$k8s/versions")"
report_dir="$root/conformance/reports/$GWAPI_VERSION"
report="$report_dir/switchyard.yaml"

# ---- 2. control plane ---------------------------------------------------------------------------
stage "2/6 control plane: a fresh etcd + kube-apiserver (scripts/k8s-up.sh), then kube-controller-manager"
"$root/scripts/conformance-down.sh" >/dev/null 2>&1 || true
"$root/scripts/k8s-up.sh"
mkdir -p "$run" "$logs" "$state"
pki="$k8s/data/pki"
# Node lifecycle stays on (the agent renews its Lease); no cloud, no node IPAM (pods get addresses
# from the agent), no CSR signing.
start_bg kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$kubeconfig" \
  --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 \
  --leader-elect=false \
  --controllers '*,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller,-certificatesigningrequest-signing-controller' \
  --service-account-private-key-file "$pki/sa.key" \
  --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials=false \
  --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --concurrent-service-endpoint-syncs 10 \
  --endpointslice-updates-batch-period 0s \
  --v 1
# The serviceaccount controller creating `default` in namespace default shows the controllers run.
sa_default() { kubectl get serviceaccount default -n default --request-timeout=5s -o name >/dev/null 2>&1; }
wait_until 120 kube-controller-manager "kube-controller-manager (ServiceAccount default/default)" sa_default
took

# ---- 3. node agent ---------------------------------------------------------------------------------
stage "3/6 node agent (test/conformance/node-agent.ts; pods as processes in network namespaces)"
start_bg node-agent node --import tsx test/conformance/node-agent.ts \
  --kubeconfig "$kubeconfig" --bin-dir "$bin" --state-dir "$state" --subnet "$CONFORMANCE_SUBNET"
node_ready() { [ "$(kubectl get node switchyard-conformance --request-timeout=5s -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; }
wait_until 90 node-agent "node switchyard-conformance Ready" node_ready
took

# ---- 4. smoke: pods, EndpointSlices, deletion --------------------------------------------------
if [ "${CONFORMANCE_SMOKE:-1}" != 0 ]; then
  stage "4/6 smoke: two echo-basic pods behind a Service, answered from the host, listed in the EndpointSlice"
  "$root/test/conformance/smoke.sh"
  took
fi

# ---- 5. controller -------------------------------------------------------------------------------
stage "5/6 switchyard controller (GatewayClass switchyard, controllerName switchyard.dev/gateway-controller)"
xds_port="${CONFORMANCE_XDS_PORT:-28000}"
metrics_port="${CONFORMANCE_METRICS_PORT:-28090}"
start_bg controller node --import tsx src/cli/main.ts controller \
  --kubeconfig "$kubeconfig" --lease-namespace default \
  --xds-port "$xds_port" --metrics-port "$metrics_port" --metrics-host 127.0.0.1 \
  --infrastructure host --envoy-path "$root/.toolchain/bin/envoy" --state-dir "$state/switchyard"
kubectl apply -f - >/dev/null <<'EOF'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: switchyard
spec:
  controllerName: switchyard.dev/gateway-controller
EOF
gwc_accepted() { [ "$(kubectl get gatewayclass switchyard --request-timeout=5s -o jsonpath='{.status.conditions[?(@.type=="Accepted")].status}' 2>/dev/null)" = True ]; }
wait_until 120 controller "GatewayClass switchyard Accepted" gwc_accepted
features="$(kubectl get gatewayclass switchyard -o jsonpath='{range .status.supportedFeatures[*]}{.name}{" "}{end}')"
say "GatewayClass switchyard status.supportedFeatures: ${features:-(none)}"
took

# ---- 6. the suite ----------------------------------------------------------------------------------
stage "6/6 conformance suite $GWAPI_VERSION, profile GATEWAY-HTTP${CONFORMANCE_RUN_TEST:+, test $CONFORMANCE_RUN_TEST} (log: .k8s/logs/conformance.log)"
mkdir -p "$report_dir"
version="$(node -p 'require("./package.json").version')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
args=(
  -test.run '^TestConformance$' -test.v -test.timeout "${CONFORMANCE_TIMEOUT:-60m}"
  -gateway-class=switchyard
  -conformance-profiles=GATEWAY-HTTP
  -organization="${CONFORMANCE_ORGANIZATION:-switchyard}" -project=switchyard
  -url="${CONFORMANCE_URL:-https://switchyard.dev}" -version="v$version-$commit"
  -report-output="$report"
  -cleanup-base-resources=false
)
[ -z "${CONFORMANCE_RUN_TEST:-}" ] || args+=(-run-test="$CONFORMANCE_RUN_TEST")
[ -z "${CONFORMANCE_SKIP_TESTS:-}" ] || args+=(-skip-tests="$CONFORMANCE_SKIP_TESTS")
if [ -n "${CONFORMANCE_SUPPORTED_FEATURES:-}" ]; then
  args+=(-supported-features="$CONFORMANCE_SUPPORTED_FEATURES")
elif [ -z "$features" ] && [ -z "${CONFORMANCE_RUN_TEST:-}" ]; then
  say "WARNING: GatewayClass switchyard publishes no status.supportedFeatures; running the core features only (-supported-features=Gateway,HTTPRoute)"
  args+=(-supported-features=Gateway,HTTPRoute)
fi
[ "${CONFORMANCE_DEBUG:-0}" = 0 ] || args+=(-debug)
# The full output goes to the log; the terminal gets test starts and results, Setup progress and failures.
set +e
( cd "$state" && KUBECONFIG="$kubeconfig" "$bin/conformance.test" "${args[@]}" ) 2>&1 | tee "$logs/conformance.log" |
  grep --line-buffered -E '^(=== RUN|\s*--- (PASS|FAIL|SKIP)|(PASS|FAIL|ok)$|panic:)|Test Setup:|Error Trace:|Error:|error waiting|timed out'
rc=${PIPESTATUS[0]}
set -e
took
alive controller || { show_log controller 40; say "the controller exited during the suite"; }
if [ -s "$report" ]; then
  say "report: ${report#"$root/"}"
else
  say "no report written (the suite writes it only when Setup completes and tests ran)"
fi
say "suite exit code $rc; total $((SECONDS - t_start))s"
exit "$rc"
