//go:build tools

// Package tools pins prometheus-adapter, which serves custom.metrics.k8s.io from Prometheus in the test
// cluster. It has a module of its own: v0.12.0 is built against Kubernetes 0.30 libraries, which the
// v1.34 components cannot share.
package tools

import _ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
