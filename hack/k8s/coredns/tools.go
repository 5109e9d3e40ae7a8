//go:build tools

// Package tools only pins what scripts/k8s-tools.sh builds; nothing imports it.
package tools

import _ "github.com/coredns/coredns"
