//go:build tools

// Package tools only pins what scripts/k8s-tools.sh builds; nothing imports it.
package tools

import (
	_ "sigs.k8s.io/gateway-api/conformance"
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
)
