#!/usr/bin/env bash
# Checks the conformance cluster before the suite uses it (scripts/conformance.sh step 4): a
# Deployment of two echo-basic pods (the suite's image and env) behind a Service must become
# Ready through kube-controller-manager and the node agent; each pod must answer on <podIP>:3000
# from the host with its own name (echo-basic reads POD_NAME and NAMESPACE from fieldRef env); the
# Service's EndpointSlice must list exactly the two pod IPs as ready; deleting the namespace must
# remove the pods and their network namespaces. Exits non-zero, naming the step, on any failure.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
kubeconfig="$root/.k8s/kubeconfig"
kubectl() { "$root/.k8s/bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
ns=conformance-smoke
subnet="${CONFORMANCE_SUBNET:-198.51.100.0/24}"
prefix="${subnet%.0/24}"
fail() { echo "smoke: FAILED: $*" >&2; kubectl get pods,endpointslices -n "$ns" -o wide >&2 2>/dev/null || true; exit 1; }
image="$(grep -m1 -o 'gcr.io/k8s-staging-gateway-api/echo-basic:[^" ]*' "$(cd "$root/hack/k8s/conformance" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/conformance/base/manifests.yaml")"

kubectl create namespace "$ns" >/dev/null
kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080, targetPort: 3000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: $image
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
YAML
kubectl wait -n "$ns" deployment/echo --for=condition=Available --timeout=90s >/dev/null || fail "deployment echo not Available after 90s"
kubectl wait -n "$ns" pod -l app=echo --for=condition=Ready --timeout=60s >/dev/null || fail "pods not Ready"

mapfile -t rows < <(kubectl get pods -n "$ns" -l app=echo -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}')
[ "${#rows[@]}" -eq 2 ] || fail "expected 2 pods, got ${#rows[@]}"
ips=()
for row in "${rows[@]}"; do
  name="${row% *}" ip="${row#* }"
  [[ "$ip" == "$prefix".* ]] || fail "pod $name has address '$ip', not one from $subnet"
  body="$(curl -sS --max-time 5 "http://$ip:3000/smoke")" || fail "no answer from pod $name at http://$ip:3000/"
  [[ "$body" == *"\"pod\": \"$name\""* || "$body" == *"\"pod\":\"$name\""* ]] || fail "pod $name at $ip answered without its own name: $body"
  [[ "$body" == *"$ns"* ]] || fail "pod $name at $ip answered without namespace $ns: $body"
  ips+=("$ip")
  echo "smoke: pod $name answers at http://$ip:3000/" >&2
done

want="$(printf '%s\n' "${ips[@]}" | sort | tr '\n' ' ')"
got=""
for _ in $(seq 1 60); do
  got="$(kubectl get endpointslices -n "$ns" -l kubernetes.io/service-name=echo -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' | sort | tr '\n' ' ')"
  [ "$got" = "$want" ] && break
  sleep 0.5
done
[ "$got" = "$want" ] || fail "EndpointSlice of Service echo lists ready addresses '$got', want '$want'"
echo "smoke: EndpointSlice of Service $ns/echo lists $want" >&2

kubectl delete namespace "$ns" --timeout=90s >/dev/null || fail "namespace $ns not deleted within 90s (pods not finalized by the node agent?)"
for ip in "${ips[@]}"; do
  if curl -s --max-time 1 "http://$ip:3000/" >/dev/null; then fail "pod address $ip still answers after the namespace is gone"; fi
done
echo "smoke: namespace $ns deleted; its pods are stopped" >&2
