// Pins (with go.sum) the Gateway API module whose config/crd/experimental/*.yaml
// scripts/k8s-up.sh installs; nothing here is built. Do not `go mod tidy` this module: nothing
// imports the requirement, so tidy would drop it.
module switchyard.local/hack/k8s/gateway-api

go 1.24.0

require sigs.k8s.io/gateway-api v1.4.1
