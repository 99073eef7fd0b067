//go:build tools

// Package tools pins what the kind node image needs beyond the test cluster's binaries (scripts/cluster): the
// kubeadm and kubectl of the same Kubernetes version, and the etcd version that kubeadm names; see node-image.sh.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
