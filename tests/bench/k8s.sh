#!/usr/bin/env bash
# Pod start latency as the kubelet reports it (a pod created to its phase
# Running, one pod after the other, p50 and p95 over $PODS pods, default
# 20), with karman's agent and with Debian's containerd (private dirs, as
# scripts/conformance.sh starts it) under the same kubelet and control
# plane (bin/karman-k8s bench), and the ratio karman/containerd. Needs
# root, `make build`, scripts/setup.sh --tests and --bench.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/bin}
PODS=${PODS:-20}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for rt in karman containerd; do
	(
		source "$ROOT/tests/conformance/lib.sh"
		cri_workdir
		cri_tools
		cri_registry
		"cri_$rt"
		"$BIN/karman-k8s" --cri-socket "$CRI_SOCK" --dir "$W/k8s" --pods "$PODS" --runtime "$rt" bench 2>"$W/k8s.err" | tee -a "$out" ||
			{ tail -30 "$W/k8s.err" >&2; exit 1; }
	)
done
# created -> Running (p50, p95), then its part after the scheduler bound
# the pod (bound-p50, bound-p95: the kubelet's and the runtime's).
# pod-start-notoken: the same with pods that mount no service account
# token (the kubelet's volume set-up, the same for both, left out).
p() { sed -n "s/^$1 $2: .* $3=\([0-9]*\)ms.*/\1/p" "$out"; }
for kind in pod-start pod-start-notoken; do
	for q in p50 p95 bound-p50 bound-p95; do
		k=$(p "$kind" karman "$q") c=$(p "$kind" containerd "$q")
		if [ -n "$k" ] && [ -n "$c" ] && [ "$c" -gt 0 ]; then
			echo "$kind $q: karman ${k} ms, containerd ${c} ms: $(awk -v k="$k" -v c="$c" 'BEGIN{printf "%.2f", k/c}')x (target <= 0.6x)"
		fi
	done
done
