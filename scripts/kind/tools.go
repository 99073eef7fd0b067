//go:build tools

// Package tools pins what the kind node image needs beyond the test cluster's binaries (scripts/cluster): the
// kubeadm and kubectl of the same Kubernetes version. It imports the cluster's commands too, so that this
// module resolves every module they share to the version the cluster's build uses (a test checks it) and Go's
// build cache serves the packages that build compiled; see node-image.sh.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/metrics-server/cmd/metrics-server"
)
