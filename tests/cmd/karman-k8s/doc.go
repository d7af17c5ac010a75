// Command karman-k8s brings a one-node Kubernetes cluster (package
// tests/k8s) up on a CRI runtime that is already running, does one job on
// it and tears it down:
//
//	karman-k8s --cri-socket SOCK --dir DIR demo
//	karman-k8s --cri-socket SOCK --dir DIR [--pods 20] [--runtime NAME] bench
//
// demo deploys three replicas of the nginx look-alike, prints `kubectl get
// nodes,pods -o wide` and scales them to none (scripts/k8s-demo.sh, `make
// k8s-demo`). bench measures pod start latency as the kubelet reports it
// (created to Running, one pod after the other) and prints p50 and p95
// (tests/bench/k8s.sh, `make bench`). The runtime, with its loopback
// registry of look-alikes, comes from tests/conformance/lib.sh.
package main
