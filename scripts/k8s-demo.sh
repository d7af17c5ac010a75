#!/usr/bin/env bash
# `make k8s-demo`: a one-node Kubernetes cluster on Karman, from nothing to
# nothing (docs/kubernetes.md, "A one-node cluster"). The runtime is
# started as `make conformance` starts it (tests/conformance/lib.sh): the
# loopback registry of signed look-alike images, then a fresh karman
# agent serving the CRI, on private directories. bin/karman-k8s then
# brings up etcd, kube-apiserver, kube-scheduler, kube-controller-manager
# and the kubelet on that socket, deploys three nginx look-alikes, prints
# `kubectl get nodes,pods -o wide`, scales them to none and stops it all.
# Nothing leaves loopback. Needs root, `make build` and the programs
# scripts/setup.sh --tests builds (scripts/k8s-build.sh, cri-tools).
set -euo pipefail
source "$(dirname "$0")/../tests/conformance/lib.sh"
if [ "$(id -u)" != 0 ]; then
	echo "k8s-demo: needs root (the kubelet and the runtime create namespaces, mounts and cgroups)" >&2
	exit 1
fi
if [ ! -x "$BIN/karman-k8s" ]; then
	echo "k8s-demo: $BIN/karman-k8s missing: run make build" >&2
	exit 1
fi
start=$(date +%s)
cri_workdir
cri_tools
cri_registry
cri_karman
echo "k8s-demo: karman agent up (CRI: $CRI_SOCK); starting the cluster" >&2
"$BIN/karman-k8s" --cri-socket "$CRI_SOCK" --dir "$W/k8s" demo
echo "k8s-demo: done in $(($(date +%s) - start)) s; tearing the runtime down" >&2
