#!/usr/bin/env bash
# Builds the real Kubernetes components used by the Kubernetes integration tests, once, from the
# Go module proxy, and links them under .k8s/:
#   .k8s/bin/kube-apiserver, .k8s/bin/kubectl   k8s.io/kubernetes     (hack/k8s/kubernetes)
#   .k8s/bin/etcd                               go.etcd.io/etcd/server/v3 (hack/k8s/etcd)
#   .k8s/bin/helm                               helm.sh/helm/v3       (hack/k8s/helm)
#   .k8s/gateway-api-crds/*.yaml                sigs.k8s.io/gateway-api, experimental channel
#                                               (hack/k8s/gateway-api; copied, not built)
# With the argument `conformance` (make conformance), also what the Gateway API conformance suite
# needs from a cluster and the suite itself:
#   .k8s/bin/kube-controller-manager            k8s.io/kubernetes     (hack/k8s/kube-controller-manager)
#   .k8s/bin/conformance.test, echo-basic       sigs.k8s.io/gateway-api/conformance (hack/k8s/conformance)
#   .k8s/bin/coredns                            github.com/coredns/coredns (hack/k8s/coredns)
# Versions come from the wrapper modules' go.mod files (one source of truth, checked by go.sum).
# Results are cached outside the repo in $CACHE/k8s/<tool>-<version>/ together with a stamp of the
# inputs (go.mod, go.sum, build flags); a warm run only compares stamps and relinks.
# The Go build and module caches stay in their usual places so a rebuild reuses them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
hack="$root/hack/k8s"
CACHE="${SWITCHYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard}"
kcache="$CACHE/k8s"
out="$root/.k8s"
quiet="${K8S_TOOLS_QUIET:-}" # set: no summary line when nothing had to be built
conformance=""
case "${1:-}" in
  "") ;;
  conformance) conformance=1 ;;
  *) echo "usage: scripts/k8s-tools.sh [conformance]" >&2; exit 2 ;;
esac

say() { echo "k8s-tools: $*" >&2; }
die() { echo "k8s-tools: $*" >&2; exit 1; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# Version of a required module, read from a wrapper go.mod (works for both require forms).
modver() { awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$hack/$1/go.mod"; }

K8S_VERSION="$(modver kubernetes k8s.io/kubernetes)"
ETCD_VERSION="$(modver etcd go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(modver helm helm.sh/helm/v3)"
GWAPI_VERSION="$(modver gateway-api sigs.k8s.io/gateway-api)"
KCM_VERSION="$(modver kube-controller-manager k8s.io/kubernetes)"
CONF_GWAPI_VERSION="$(modver conformance sigs.k8s.io/gateway-api)"
COREDNS_VERSION="$(modver coredns github.com/coredns/coredns)"
for v in K8S_VERSION KCM_VERSION ETCD_VERSION HELM_VERSION GWAPI_VERSION CONF_GWAPI_VERSION COREDNS_VERSION; do
  [ -n "${!v}" ] || die "cannot read $v from hack/k8s/*/go.mod"
done

# k8s.io/kubernetes vX.Y.Z goes with staging modules v0.Y.Z: every replace must agree.
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
staging_want="v0.${K8S_VERSION#v1.}"
for m in kubernetes kube-controller-manager; do
  bad="$(awk -v want="$staging_want" '$2 == "=>" && $1 ~ /^k8s\.io\// && $4 != want { print $1 " " $4 }' "$hack/$m/go.mod")"
  [ -z "$bad" ] || die "hack/k8s/$m/go.mod: staging replaces must be $staging_want for $K8S_VERSION: $bad"
done
[ "$KCM_VERSION" = "$K8S_VERSION" ] ||
  die "hack/k8s/kube-controller-manager requires k8s.io/kubernetes $KCM_VERSION, hack/k8s/kubernetes $K8S_VERSION: make them equal"

# The suite refuses CRDs of another bundle version than its own.
[ "$CONF_GWAPI_VERSION" = "$GWAPI_VERSION" ] ||
  die "hack/k8s/conformance requires sigs.k8s.io/gateway-api $CONF_GWAPI_VERSION but the CRDs come from $GWAPI_VERSION (hack/k8s/gateway-api): make them equal"

stamp_of() { # stamp_of MODULE_DIR EXTRA... -> hash of the inputs that decide the build
  { cat "$hack/$1/go.mod" "$hack/$1/go.sum"; shift; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# Runs a build step, printing the tool, a heartbeat every 30 s and the elapsed time.
built_any="" hb=""
stop_heartbeat() { if [ -n "$hb" ]; then kill "$hb" 2>/dev/null || true; wait "$hb" 2>/dev/null || true; hb=""; fi; }
trap stop_heartbeat EXIT
timed() { # timed LABEL CMD...
  local label="$1"; shift
  local t0=$SECONDS
  say "building $label ..."
  ( while sleep 30 </dev/null >/dev/null 2>&1; do echo "k8s-tools:   ... $label: $(fmt_secs $((SECONDS - t0))) elapsed" >&2; done ) 9>&- &
  hb=$!
  local rc=0
  "$@" || rc=$?
  stop_heartbeat
  [ "$rc" -eq 0 ] || die "building $label failed (exit $rc) after $(fmt_secs $((SECONDS - t0)))"
  say "built $label in $(fmt_secs $((SECONDS - t0)))"
  built_any=1
}

need_go() {
  command -v go >/dev/null || die "Go is required to build the Kubernetes test components (go.dev/dl)"
}

# ---- kube-apiserver + kubectl (one go build: shared packages compile once) ----------------------
build_kubernetes() {
  local dir="$1" tmp="$2"
  local vpkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
  local build_date
  # The release's own date, not today's: the same inputs give the same binary.
  build_date="$(cd "$hack/kubernetes" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)" || return 1
  [ -n "$build_date" ] || build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ldflags="-s -w" p
  for p in "${vpkgs[@]}"; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.gitCommit= -X $p.buildDate=$build_date"
  done
  (cd "$hack/kubernetes" && CGO_ENABLED=0 go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
}

# The Go toolchain runs at the lowest priority: these builds share 2 cores with everything else.
gobuild() { nice -n 19 go "$@"; }

# Same version stamping as kube-apiserver.
build_kube_controller_manager() {
  local dir="$1" tmp="$2" build_date
  build_date="$(cd "$hack/kube-controller-manager" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)" || return 1
  [ -n "$build_date" ] || build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ldflags="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.gitCommit= -X $p.buildDate=$build_date"
  done
  (cd "$hack/kube-controller-manager" && CGO_ENABLED=0 gobuild build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-controller-manager)
}

# The suite's own test file compiled as it is published (no -run filter baked in).
build_conformance() {
  local dir="$1" tmp="$2"
  (cd "$hack/conformance" && CGO_ENABLED=0 gobuild test -c -p 2 -trimpath -ldflags "-s -w" \
    -o "$tmp/conformance.test" sigs.k8s.io/gateway-api/conformance &&
    CGO_ENABLED=0 gobuild build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/echo-basic" \
    sigs.k8s.io/gateway-api/conformance/echo-basic)
}

build_coredns() {
  local dir="$1" tmp="$2"
  (cd "$hack/coredns" && CGO_ENABLED=0 gobuild build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/coredns" github.com/coredns/coredns)
}

build_etcd() {
  local dir="$1" tmp="$2"
  (cd "$hack/etcd" && CGO_ENABLED=0 go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  local dir="$1" tmp="$2" h=helm.sh/helm/v3
  local ldflags="-s -w -X $h/internal/version.version=$HELM_VERSION -X $h/internal/version.gitTreeState=clean"
  # The Kubernetes version helm assumes without a cluster (helm template, lint): that of the
  # client-go it is built with, as helm's own Makefile does.
  local cg; cg="$(modver helm k8s.io/client-go)"; cg="${cg#v0.}"; cg="${cg%%.*}"
  [ -n "$cg" ] || die "cannot read k8s.io/client-go from hack/k8s/helm/go.mod"
  ldflags+=" -X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=$cg"
  ldflags+=" -X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=$cg"
  (cd "$hack/helm" && CGO_ENABLED=0 go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/helm" $h/cmd/helm)
}

fetch_gateway_api() {
  local dir="$1" tmp="$2" src
  # go.sum in hack/k8s/gateway-api verifies the download.
  src="$(cd "$hack/gateway-api" && go mod download -json sigs.k8s.io/gateway-api | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || return 1
  [ -n "$src" ] && [ -d "$src/config/crd/experimental" ] || die "sigs.k8s.io/gateway-api@$GWAPI_VERSION: no config/crd/experimental in the module"
  mkdir -p "$tmp/experimental" || return 1
  cp "$src"/config/crd/experimental/gateway.networking.*.yaml "$tmp/experimental/" || return 1
  chmod -R u+w "$tmp"
}

# ensure NAME VERSION MODULE_DIR BUILD_FN CHECK_FILE...
ensure() {
  local name="$1" version="$2" mod="$3" fn="$4"; shift 4
  local dir="$kcache/$name-$version" stamp f ok=1
  stamp="$(stamp_of "$mod" "$(declare -f "$fn")")"
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
    for f in "$@"; do [ -e "$dir/$f" ] || ok=""; done
    [ -n "$ok" ] && return 0
  fi
  need_go
  local tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  timed "$name $version" "$fn" "$dir" "$tmp"
  for f in "$@"; do [ -e "$tmp/$f" ] || die "$name: $f missing after the build"; done
  echo "$stamp" > "$tmp/.stamp"
  rm -rf "$dir"; mv "$tmp" "$dir"
}

mkdir -p "$kcache" "$out/bin"
# One builder at a time (parallel `make` targets, several work trees sharing the cache).
exec 9>"$kcache/.lock"
flock 9

t_all=$SECONDS
ensure kubernetes "$K8S_VERSION" kubernetes build_kubernetes kube-apiserver kubectl
ensure etcd "$ETCD_VERSION" etcd build_etcd etcd
ensure helm "$HELM_VERSION" helm build_helm helm
ensure gateway-api "$GWAPI_VERSION" gateway-api fetch_gateway_api experimental

if [ -n "$conformance" ]; then
  ensure kube-controller-manager "$K8S_VERSION" kube-controller-manager build_kube_controller_manager kube-controller-manager
  ensure gateway-api-conformance "$CONF_GWAPI_VERSION" conformance build_conformance conformance.test echo-basic
  ensure coredns "$COREDNS_VERSION" coredns build_coredns coredns
  ln -sfn "$kcache/kube-controller-manager-$K8S_VERSION/kube-controller-manager" "$out/bin/kube-controller-manager"
  ln -sfn "$kcache/gateway-api-conformance-$CONF_GWAPI_VERSION/conformance.test" "$out/bin/conformance.test"
  ln -sfn "$kcache/gateway-api-conformance-$CONF_GWAPI_VERSION/echo-basic" "$out/bin/echo-basic"
  ln -sfn "$kcache/coredns-$COREDNS_VERSION/coredns" "$out/bin/coredns"
fi

ln -sfn "$kcache/kubernetes-$K8S_VERSION/kube-apiserver" "$out/bin/kube-apiserver"
ln -sfn "$kcache/kubernetes-$K8S_VERSION/kubectl" "$out/bin/kubectl"
ln -sfn "$kcache/etcd-$ETCD_VERSION/etcd" "$out/bin/etcd"
ln -sfn "$kcache/helm-$HELM_VERSION/helm" "$out/bin/helm"
ln -sfn "$kcache/gateway-api-$GWAPI_VERSION/experimental" "$out/gateway-api-crds"
cat > "$out/versions" <<EOF
KUBERNETES_VERSION=$K8S_VERSION
ETCD_VERSION=$ETCD_VERSION
HELM_VERSION=$HELM_VERSION
GATEWAY_API_VERSION=$GWAPI_VERSION
COREDNS_VERSION=$COREDNS_VERSION
EOF

if [ -n "$built_any" ]; then
  say "done in $(fmt_secs $((SECONDS - t_all)))"
elif [ -n "$quiet" ]; then
  exit 0
fi
say "kube-apiserver/kubectl $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION, gateway-api $GWAPI_VERSION CRDs${conformance:+, kube-controller-manager, conformance suite + echo-basic $CONF_GWAPI_VERSION, coredns $COREDNS_VERSION} -> .k8s/"
