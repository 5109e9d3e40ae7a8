#!/usr/bin/env bash
# Starts a local Kubernetes control plane for the integration tests: a real etcd and a real
# kube-apiserver on loopback (built by scripts/k8s-tools.sh), client-certificate auth with an admin
# in system:masters, RBAC; then installs the Gateway API CRDs (experimental channel) and every
# YAML in crds/ with the real kubectl and waits until they are Established.
#   .k8s/kubeconfig   admin kubeconfig          .k8s/env    KUBECONFIG and PATH for a shell
#   .k8s/logs/        etcd.log, kube-apiserver.log
#   .k8s/run/         pid files, ports          .k8s/data/  etcd data, certificates
# Idempotent: when the control plane is already up and healthy it only re-applies crds/ if those
# files changed, and returns. Stop it with scripts/k8s-down.sh.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
k8s="$root/.k8s"
bin="$k8s/bin"
run="$k8s/run"
logs="$k8s/logs"
data="$k8s/data"
pki="$data/pki"
kubeconfig="$k8s/kubeconfig"
READY_TIMEOUT="${K8S_READY_TIMEOUT:-120}"

say() { echo "k8s-up: $*" >&2; }
show_log() { # show_log NAME: the tail of a component's log
  local f="$logs/$1.log"
  if [ -s "$f" ]; then
    echo "---- last lines of .k8s/logs/$1.log ----" >&2
    tail -n "${K8S_LOG_LINES:-40}" "$f" >&2
    echo "----" >&2
  fi
}
fail() { # fail MESSAGE [LOG...]
  local msg="$1"; shift
  echo "k8s-up: $msg" >&2
  local l; for l in "$@"; do show_log "$l"; done
  exit 1
}

kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# pid of a running component we started, or nothing.
alive() {
  local pid; pid="$(cat "$run/$1.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$k8s/" || return 1
  echo "$pid"
}

healthy() {
  alive etcd >/dev/null && alive kube-apiserver >/dev/null && [ -s "$kubeconfig" ] &&
    kubectl get --raw /readyz --request-timeout=5s >/dev/null 2>&1
}

local_crds() { # the YAML files in crds/, sorted
  [ -d "$root/crds" ] || return 0
  find "$root/crds" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) | LC_ALL=C sort
}
crds_stamp() { local f; local_crds | while read -r f; do sha256sum "$f"; done | sha256sum | cut -c1-16; }

apply_crds() {
  local files=("$k8s"/gateway-api-crds/*.yaml) f
  while read -r f; do [ -n "$f" ] && files+=("$f"); done < <(local_crds)
  local args=() n=0
  for f in "${files[@]}"; do args+=(-f "$f"); n=$((n + 1)); done
  # Server-side apply: the experimental Gateway API CRDs are too big for the
  # last-applied-configuration annotation of a client-side apply.
  kubectl apply --server-side --force-conflicts --field-manager=switchyard-k8s-up "${args[@]}" >"$logs/apply.log" 2>&1 ||
    fail "kubectl apply of the CRDs failed" apply kube-apiserver
  # Poll rather than `kubectl wait crd --all`, which fails on a CRD whose status is not set yet.
  local deadline=$((SECONDS + 60)) pending
  while :; do
    pending="$(kubectl get crd --request-timeout=10s -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Established")].status}{"\n"}{end}' 2>>"$logs/apply.log" | grep -v '=True$' || true)"
    [ -n "$pending" ] || break
    [ "$SECONDS" -lt "$deadline" ] || { echo "not Established after 60s: $pending" >>"$logs/apply.log"; fail "CRDs did not become Established" apply; }
    sleep 0.3
  done
  crds_stamp > "$run/crds.stamp"
  say "applied $n CRD files (Gateway API experimental + crds/); all Established"
}

t0=$SECONDS
K8S_TOOLS_QUIET="${K8S_TOOLS_QUIET-1}" "$root/scripts/k8s-tools.sh"
for b in etcd kube-apiserver kubectl; do [ -x "$bin/$b" ] || fail "missing .k8s/bin/$b (scripts/k8s-tools.sh)"; done
command -v openssl >/dev/null || fail "openssl is required to make the control plane's certificates"

mkdir -p "$run" "$logs"
exec 9>"$k8s/.lock"   # one k8s-up/k8s-down at a time; k8s-down takes it too
flock 9

if healthy; then
  if [ "$(crds_stamp)" != "$(cat "$run/crds.stamp" 2>/dev/null)" ]; then
    say "already up; crds/ changed, re-applying"
    apply_crds
  fi
  say "already up: $(cat "$run/apiserver.url") (KUBECONFIG=$kubeconfig)"
  exit 0
fi

# Half up, stale pid files or leftovers: start from scratch.
if alive etcd >/dev/null || alive kube-apiserver >/dev/null || [ -d "$data" ]; then
  say "not healthy; stopping leftovers and starting fresh"
  K8S_DOWN_LOCKED=1 "$root/scripts/k8s-down.sh"
  mkdir -p "$run" "$logs"
fi
# From here on a failure stops whatever this run started (the logs stay).
started=""
cleanup() { [ $? -eq 0 ] || [ -z "$started" ] || K8S_DOWN_LOCKED=1 "$root/scripts/k8s-down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT
mkdir -p -m 700 "$data" "$data/etcd" "$pki"

# ---- ports: free ones on loopback, below the ephemeral range, unless given ---------------------
used=" $(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" { n = split($2, a, ":"); print a[n] }' |
  while read -r h; do echo $((16#$h)); done | tr '\n' ' ') "
pick_port() { # sets $port to a listening-free port not handed out yet
  local i
  for i in $(seq 1 500); do
    port=$((20000 + RANDOM % 12000))
    case "$used" in *" $port "*) continue ;; esac
    used+="$port "
    return 0
  done
  fail "no free port found on 127.0.0.1"
}
pick_port; ETCD_PORT="${K8S_ETCD_PORT:-$port}"
pick_port; ETCD_PEER_PORT="${K8S_ETCD_PEER_PORT:-$port}"
pick_port; API_PORT="${K8S_APISERVER_PORT:-$port}"
server="https://127.0.0.1:$API_PORT"

# ---- certificates: a tiny CA, the serving cert, the admin client cert, service-account keys ----
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
sign() { # sign NAME SUBJECT EXTENSIONS
  newkey "$pki/$1.key"
  openssl req -new -key "$pki/$1.key" -subj "$2" -out "$pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$3") -out "$pki/$1.crt" 2>/dev/null
  rm -f "$pki/$1.csr"
}
{
  newkey "$pki/ca.key"
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=switchyard-test-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca.crt" 2>/dev/null
  sign apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
    'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc')"
  sign admin "/O=system:masters/CN=switchyard-admin" "$(printf '%s\n' \
    'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
    'extendedKeyUsage=clientAuth')"
  newkey "$pki/sa.key"
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
} || fail "openssl could not make the certificates"
chmod 600 "$pki"/*.key

b64() { base64 < "$1" | tr -d '\n'; }
umask 077
cat > "$kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: switchyard
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: switchyard-admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: switchyard
  context:
    cluster: switchyard
    user: switchyard-admin
current-context: switchyard
EOF
mv "$kubeconfig.tmp" "$kubeconfig"
umask 022
echo "$server" > "$run/apiserver.url"
echo "$ETCD_PORT" > "$run/etcd.port"

# ---- start: each in its own session so it outlives make and a Ctrl-C ---------------------------
start() { # start NAME ARGS...: the pid file names the component itself (bash execs into it)
  local name="$1"; shift
  : > "$logs/$name.log"
  started=1
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$run/$name.pid" "$bin/$name" "$@" </dev/null >>"$logs/$name.log" 2>&1 9>&- &
  local i; for i in $(seq 1 50); do [ -s "$run/$name.pid" ] && return 0; sleep 0.1; done
  fail "$name did not start" "$name"
}
wait_for() { # wait_for NAME SECONDS CHECK...
  local name="$1" limit="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    alive "$name" >/dev/null || fail "$name exited during startup" "$name"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name not ready after ${limit}s" "$name"
    sleep 0.3
  done
}
etcd_healthy() {
  local reply
  reply="$( { exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && timeout 2 cat <&3; } 2>/dev/null)" || return 1
  [[ "$reply" == *'"health":"true"'* ]]
}
apiserver_ready() { kubectl get --raw /readyz --request-timeout=5s >/dev/null 2>&1; }

start etcd --name switchyard --data-dir "$data/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "switchyard=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
  --unsafe-no-fsync --log-level warn
wait_for etcd 30 etcd_healthy

start kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer "$server/" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode RBAC \
  --endpoint-reconciler-type none \
  --service-cluster-ip-range 10.0.0.0/24 \
  --allow-privileged=true \
  --disable-admission-plugins ServiceAccount \
  --profiling=false
wait_for kube-apiserver "$READY_TIMEOUT" apiserver_ready

cat > "$k8s/env" <<EOF
# source .k8s/env: the local control plane's admin kubeconfig and its tools first on PATH
export KUBECONFIG="$kubeconfig"
export PATH="$bin:\$PATH"
EOF

apply_crds
say "up in $((SECONDS - t0))s: $server (KUBECONFIG=$kubeconfig)"
