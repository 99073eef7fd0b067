// Command pod-discovery writes the test cluster's scrape targets for Prometheus as a file_sd file: every
// running pod annotated prometheus.io/scrape=true, at its pod IP and prometheus.io/port, labelled with its
// namespace and pod (the labels prometheus-adapter maps to Kubernetes objects). Debian's Prometheus is built
// without Kubernetes service discovery; this stands in for it, polling the API server every second.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func scrapeTargets(pods []corev1.Pod) []targetGroup {
	groups := []targetGroup{}
	for _, pod := range pods {
		annotations := pod.Annotations
		if annotations["prometheus.io/scrape"] != "true" || pod.Status.Phase != corev1.PodRunning ||
			pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			continue
		}
		port := annotations["prometheus.io/port"]
		if port == "" {
			continue
		}
		path := annotations["prometheus.io/path"]
		if path == "" {
			path = "/metrics"
		}
		groups = append(groups, targetGroup{
			Targets: []string{net.JoinHostPort(pod.Status.PodIP, port)},
			Labels: map[string]string{
				"namespace":        pod.Namespace,
				"pod":              pod.Name,
				"__metrics_path__": path,
			},
		})
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Targets[0] < groups[j].Targets[0] })
	return groups
}

func writeAtomically(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".targets-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	output := flag.String("output", "", "file_sd JSON file to write")
	interval := flag.Duration("interval", time.Second, "how often to list pods")
	flag.Parse()
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig %s: %v", *kubeconfig, err)
	}
	client := kubernetes.NewForConfigOrDie(config)
	var last []byte
	for {
		pods, err := client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			log.Printf("listing pods: %v", err)
		} else {
			data, _ := json.MarshalIndent(scrapeTargets(pods.Items), "", "  ")
			if string(data) != string(last) {
				if err := writeAtomically(*output, data); err != nil {
					log.Printf("writing %s: %v", *output, err)
				} else {
					last = data
				}
			}
		}
		time.Sleep(*interval)
	}
}
