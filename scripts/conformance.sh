#!/usr/bin/env bash
# Runs critest (sigs.k8s.io/cri-tools v1.37.0) against a freshly started
# CRI runtime on private directories, offline (docs/kubernetes.md,
# "Conformance"), prints the totals and the failed specs, and fails only
# when a spec fails that the runtime's list of known failures
# (tests/conformance/RUNTIME.known-failures) does not name.
#
#   scripts/conformance.sh [--runtime karman|containerd] [--focus REGEX]
#                          [--skip REGEX] [--parallel N]
#
# karman (the default) is bin/karman-full's agent with --cri-socket;
# containerd is Debian's containerd 1.6 + runc, the anchor. Both fetch
# critest's images from a loopback registry of look-alikes, with
# HTTP_PROXY/HTTPS_PROXY at a dead loopback port. critest's full output is
# kept in bin/conformance-RUNTIME.log, its JUnit report in
# bin/conformance-RUNTIME.xml. Needs root, `make build` and
# scripts/setup.sh --tests.
set -euo pipefail
source "$(dirname "$0")/../tests/conformance/lib.sh"

runtime=karman focus="" skip="" parallel=1
while [ $# -gt 0 ]; do
	case "$1" in
	--runtime) runtime=$2; shift 2 ;;
	--focus) focus=$2; shift 2 ;;
	--skip) skip=$2; shift 2 ;;
	--parallel) parallel=$2; shift 2 ;;
	*) echo "usage: scripts/conformance.sh [--runtime karman|containerd] [--focus REGEX] [--skip REGEX] [--parallel N]" >&2; exit 2 ;;
	esac
done
case "$runtime" in
karman | containerd) ;;
*) echo "conformance: --runtime $runtime: want karman or containerd" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "conformance: needs root (the runtime creates namespaces, mounts and cgroups)" >&2
	exit 1
fi
known=$ROOT/tests/conformance/$runtime.known-failures
log=$BIN/conformance-$runtime.log

cri_workdir
cri_tools
cri_registry
"cri_$runtime"

args=(--runtime-endpoint "unix://$CRI_SOCK" --image-endpoint "unix://$CRI_SOCK" --ginkgo.no-color --ginkgo.junit-report "$W/junit.xml")
[ "$parallel" != 1 ] && args+=(--parallel "$parallel")
[ -n "$focus" ] && args+=(--ginkgo.focus "$focus")
[ -n "$skip" ] && args+=(--ginkgo.skip "$skip")
cri_log "critest against $runtime (log: $log)"
start=$(date +%s)
set +e
# critest itself talks to pods and loopback only: no proxy for it.
(cd "$W" && env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy \
	"$CRI_TOOLS/critest" "${args[@]}") >"$log" 2>&1
status=$?
set -e
cp "$W/junit.xml" "${log%.log}.xml" 2>/dev/null || true
secs=$(($(date +%s) - start))

ran=$(sed -n 's/^Ran \([0-9]*\) of \([0-9]*\) Specs in .*/\1 \2/p' "$log" | tail -1)
totals=$(sed -n -E 's/^(SUCCESS|FAIL)! -- /&/p' "$log" | tail -1)
if [ -z "$ran" ] || [ -z "$totals" ]; then
	echo "conformance: critest exited $status without its summary; the end of $log:" >&2
	tail -40 "$log" >&2
	exit 1
fi
num() { sed -n "s/.* \([0-9]*\) $1.*/\1/p" <<<"$totals"; }
passed=$(num Passed) failed=$(num Failed) skipped=$(num Skipped)
echo "conformance: $runtime: $passed passed, $failed failed, $skipped skipped (${ran% *} of ${ran#* } specs ran) in ${secs}s"

# The failed specs, from ginkgo's "Summarizing N Failures" block.
mapfile -t fails < <(sed -n '/^Summarizing [0-9]* Failure/,$p' "$log" | sed -n 's/^ *\[\(FAIL\|TIMEDOUT\|PANICKED\|INTERRUPTED\)\] \(.*\)$/\2/p')
unexpected=0
for f in "${fails[@]}"; do
	why=""
	if [ -f "$known" ]; then
		while IFS= read -r line; do
			case "$line" in "" | "#"*) continue ;; esac
			pat=${line%% | *}
			if [[ "$f" == *"$pat"* ]]; then
				why=${line#* | }
				break
			fi
		done <"$known"
	fi
	if [ -n "$why" ]; then
		echo "  known:      $f ($why)"
	else
		echo "  UNEXPECTED: $f"
		unexpected=$((unexpected + 1))
	fi
done
# Known failures that passed: the list should lose them.
if [ -f "$known" ]; then
	while IFS= read -r line; do
		case "$line" in "" | "#"*) continue ;; esac
		pat=${line%% | *}
		if grep -F -- "$pat" "$W/junit.xml" 2>/dev/null | grep -q 'status="passed"'; then
			echo "  passes now (remove it from $(basename "$known")): $pat"
		fi
	done <"$known"
fi
if [ "$unexpected" -gt 0 ]; then
	echo "conformance: $unexpected failed spec(s) not in $known" >&2
	exit 1
fi
if [ "$failed" -gt 0 ] && [ "${#fails[@]}" -eq 0 ]; then
	echo "conformance: critest counts $failed failures but names none; see $log" >&2
	exit 1
fi
