#!/usr/bin/env bash
# Mutable pod benchmark: `karman app add` + `karman app start` of an app
# running /bin/true in a pod already running (started with --no-apps, so
# its namespaces, network and init exist), beside `runc run` of a bundle of
# the same rootfs; in rounds, one of each per round in turn, so that drift
# on a shared machine does not skew the ratio (the median of the per-round
# ratios). Each round removes the app again (`app rm`, not timed). Then the
# same through the stage0 library (BenchmarkAppAddStart), beside the same
# runc median.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
runs=${BENCH_RUNS:-30}
work=/var/tmp/karman-bench-apps-$$
mkdir -p "$work"
uuid=
cleanup() {
	if [ -n "$uuid" ]; then
		bin/karman --dir "$work/k" stop --force "$uuid" >/dev/null 2>&1 || true
		bin/karman --dir "$work/k" status --wait=30s "$uuid" >/dev/null 2>&1 || true
	fi
	bin/karman --dir "$work/k" gc --grace-period=0 >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
k() { bin/karman --dir "$work/k" --config-dir "$work/etc" "$@"; }

. tests/bench/image.sh
uuid=$(k run --net=none --no-apps)

python3 - "$work" "$img" "$uuid" "$runs" <<'PY'
import statistics, subprocess, sys, time
work, img, uuid, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
k = f"bin/karman --dir {work}/k --config-dir {work}/etc".split()
def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
add, start, both, runc = [], [], [], []
for i in range(rounds + 3):
    t0 = time.perf_counter()
    run(k + ["app", "add", uuid, img, "--name", "b", "--exec", "/bin/true"])
    t1 = time.perf_counter()
    run(k + ["app", "start", uuid, "--app", "b"])
    t2 = time.perf_counter()
    run(k + ["app", "rm", uuid, "--app", "b", "--force"])
    t3 = time.perf_counter()
    run(["runc", "run", "-b", f"{work}/bundle", "karman-bench-apps"])
    t4 = time.perf_counter()
    if i < 3:
        continue  # warm-up
    add.append((t1 - t0) * 1000); start.append((t2 - t1) * 1000)
    both.append((t2 - t0) * 1000); runc.append((t4 - t3) * 1000)
m = statistics.median
print(f"app add            median {m(add):6.1f} ms")
print(f"app start          median {m(start):6.1f} ms")
print(f"app add + start    median {m(both):6.1f} ms")
print(f"runc run           median {m(runc):6.1f} ms")
print(f"(add + start) / runc run, median of the per-round ratios: {m([b / r for b, r in zip(both, runc)]):.2f} (target: under 0.5)")
open(f"{work}/runc-median", "w").write(f"{m(runc)}\n")
PY

# The same through the stage0 library, as the agent and a CRI server call
# it (no karman process to start per command): BenchmarkAppAddStart.
lib=$(CGO_ENABLED=0 KARMAN_BINARY=$PWD/bin/karman go test -run '^$' -bench '^BenchmarkAppAddStart$' \
	-benchtime "${runs}x" -count 5 ./tests | awk '/^BenchmarkAppAddStart/ && $4 == "ns/op" {print $3}')
python3 - "$work/runc-median" $lib <<'PY'
import statistics, sys
runc = float(open(sys.argv[1]).read())
lib = statistics.median(float(ns) / 1e6 for ns in sys.argv[2:])
print(f"library add + start median {lib:6.1f} ms (stage0.AddApp + StartApp, median of 5 benchmark runs)")
print(f"library (add + start) / runc run median: {lib / runc:.2f} (target: under 0.5)")
PY
