// Command coredns is the cluster DNS of the kind node image (scripts/kind/node-image.sh): CoreDNS at the version
// kubeadm names (this directory's go.mod), with the plugins of the Corefile kubeadm writes (errors, health,
// ready, kubernetes, prometheus, forward, cache, loop, reload, loadbalance) and three common ones a user may add
// (log, hosts, rewrite). CoreDNS's own main imports all of its plugins, cloud DNS providers' SDKs included; a
// main of one's own with the plugins one needs is how CoreDNS documents building a smaller one. Its module is
// not the test cluster's: this CoreDNS's kubernetes plugin needs the client-go it was released with (v0.32),
// which the cluster's Kubernetes v1.34 would replace.
package main

import (
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
)

func main() {
	coremain.Run()
}
