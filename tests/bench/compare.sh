#!/usr/bin/env bash
# Start time of two builds side by side: `karman run --net=none IMAGE
# /bin/true` of BASE, of NEW (each a checkout with `bin/` built by `make
# build`) and `runc run` of a bundle of the same rootfs, one of each per
# round in turn, ROUNDS rounds (default 40) after 3 of warm-up. Prints the
# medians, the medians of the per-round ratios and the median paired
# difference NEW - BASE: drift on a shared machine cannot skew them.
#
#   tests/bench/compare.sh /path/to/base-checkout /path/to/new-checkout [ROUNDS]
set -euo pipefail
A=$1; B=$2; rounds=${3:-40}
work=/var/tmp/karman-ab-$$
mkdir -p $work
trap '$A/bin/karman --dir $work/a gc --grace-period=0 >/dev/null 2>&1; $B/bin/karman --dir $work/b gc --grace-period=0 >/dev/null 2>&1; rm -rf $work' EXIT
$B/bin/karman-testimage --kind busybox --layout "$work/layout" --tag latest >/dev/null
img="oci:$work/layout:latest"
for x in a b; do
  bin=$A; [ $x = b ] && bin=$B
  # The layout was built here, unsigned: accept it by its own scope only.
  $bin/bin/karman --dir $work/$x --config-dir $work/etc trust add --type insecure-accept-anything --scope "oci:$work/layout" >/dev/null
  $bin/bin/karman --dir $work/$x --config-dir $work/etc fetch "$img" >/dev/null
done
mkdir -p "$work/bundle/rootfs"
cp -a "$work"/b/images/layers/sha256/*/. "$work/bundle/rootfs/"
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]; c["process"]["terminal"] = False; c["process"]["rlimits"] = []
json.dump(c, open(p, "w"))
PY
python3 - "$work" "$img" "$rounds" "$A" "$B" <<'PY'
import statistics, subprocess, sys, time
work, img, rounds, A, B = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
cmds = {
  "base": f"{A}/bin/karman --dir {work}/a --config-dir {work}/etc run --net=none {img} --exec /bin/true",
  "new": f"{B}/bin/karman --dir {work}/b --config-dir {work}/etc run --net=none {img} --exec /bin/true",
  "runc": f"runc run -b {work}/bundle karman-ab",
}
gcs = [f"{A}/bin/karman --dir {work}/a gc --grace-period=0".split(), f"{B}/bin/karman --dir {work}/b gc --grace-period=0".split()]
times = {n: [] for n in cmds}
for i in range(rounds + 3):
    for name, cmd in cmds.items():
        for g in gcs: subprocess.run(g, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t = time.perf_counter()
        r = subprocess.run(cmd.split(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if i >= 3: times[name].append((time.perf_counter() - t) * 1000)
        if r.returncode != 0: sys.exit(f"{name} failed: {r.stderr}")
def ratio(xs, ys):
    return statistics.median([x / y for x, y in zip(xs, ys)])
for name, ts in times.items():
    print(f"{name:5s} median {statistics.median(ts):6.1f} ms   /runc {ratio(ts, times['runc']):.2f}")
diff = statistics.median([b - a for a, b in zip(times["base"], times["new"])])
print(f"new / base {ratio(times['new'], times['base']):.2f}, new - base {diff:+.1f} ms (medians of the per-round ratios and differences)")
PY
