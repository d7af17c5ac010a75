#!/usr/bin/env bash
# CRI benchmark: karman's agent beside Debian's containerd 1.6 + runc, each
# started fresh on private directories with critest's look-alike images in
# a loopback registry (tests/conformance/lib.sh):
#   - a lifecycle loop of BENCH_CRI_N (default 30) iterations, one after the
#     other: RunPodSandbox, CreateContainer, StartContainer, StopContainer,
#     RemoveContainer, StopPodSandbox, RemovePodSandbox (karman-cribench);
#   - critest's benchmark specs (critest --benchmark), small sizes;
# then every figure of karman beside containerd's, with karman/containerd
# (target for the lifecycle: <= 0.5x). Needs root and make build.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
CGO_ENABLED=0 go build -o bin/karman-cribench ./tests/cmd/karman-cribench
n=${BENCH_CRI_N:-30}
out=$(mktemp -d /var/tmp/karman-bench-cri.XXXXXX)
trap 'rm -rf "$out"' EXIT

params=$out/params.yaml
cat >"$params" <<'YAML'
containersNumber: 20
containersNumberParallel: 1
podsNumber: 20
podsNumberParallel: 1
imagesNumber: 10
imagesNumberParallel: 1
imagePullingBenchmarkImage: registry.k8s.io/e2e-test-images/busybox:1.29-2
imageListingBenchmarkImages: [registry.k8s.io/e2e-test-images/busybox:1.29-2]
YAML

failed=()
for rt in containerd karman; do
	mkdir -p "$out/$rt"
	# One runtime at a time, each in a subshell with its own clean-up.
	if ! (
		source tests/conformance/lib.sh
		cri_workdir
		cri_tools
		cri_registry
		"cri_$rt"
		bin/karman-cribench loop --endpoint "unix://$CRI_SOCK" --image registry.k8s.io/pause:3.9 --n "$n" --out "$out/$rt/loop.json"
		if ! (cd "$W" && env -u HTTP_PROXY -u HTTPS_PROXY "$CRI_TOOLS/critest" --runtime-endpoint "unix://$CRI_SOCK" --image-endpoint "unix://$CRI_SOCK" \
			--benchmark --benchmarking-params-file "$params" --benchmarking-output-dir "$out/$rt" --ginkgo.no-color) >"$out/$rt/critest.log" 2>&1; then
			echo "bench: critest --benchmark failed on $rt: $(grep -E '^(SUCCESS|FAIL)!' "$out/$rt/critest.log" | tail -1)" >&2
		fi
	); then
		echo "bench: the CRI benchmark could not run on $rt (above)" >&2
		failed+=("$rt")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	exit 1
fi
bin/karman-cribench report "$out/karman" "$out/containerd"
