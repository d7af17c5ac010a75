#!/usr/bin/env bash
# Pod start benchmark: `karman run --net=none IMAGE /bin/true` (image stored)
# beside `runc run` of a bundle of the same rootfs, `podman run --rm
# --network none`, and the floor `unshare ... /bin/true`; then the memory
# one running pod costs (PSS of karman's processes) against podman's conmon.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${BENCH_RUNS:-30}
work=/var/tmp/karman-bench-run-$$
mkdir -p "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	bin/karman --dir "$work/k" gc --grace-period=0 >/dev/null 2>&1 || true
	if command -v podman >/dev/null; then podman rm -f karman-bench-mem >/dev/null 2>&1 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
k() { bin/karman --dir "$work/k" --config-dir "$work/etc" "$@"; }

. tests/bench/image.sh

cmds=(-n "karman run" --prepare "bin/karman --dir $work/k gc --grace-period=0" "bin/karman --dir $work/k --config-dir $work/etc run --net=none $img --exec /bin/true"
	-n "karman run, isolators off" "bin/karman --dir $work/k --config-dir $work/etc run --net=none --insecure-options=capabilities,paths,seccomp $img --exec /bin/true"
	-n "karman run, exec shim" "bin/karman --dir $work/k --config-dir $work/etc run --net=none $img --seccomp mode=remove,keyctl --exec /bin/true"
	-n "runc run" "runc run -b $work/bundle karman-bench"
	-n "unshare floor" "unshare --pid --fork --mount --uts --ipc --net /bin/true")
if command -v podman >/dev/null; then
	pimg=$(podman pull -q "oci:$work/layout:latest")
	pcmd="podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --rm --network none $pimg /bin/true"
	if $pcmd >/dev/null 2>"$work/podman.err"; then
		cmds+=(-n "podman run" "$pcmd")
	else
		echo "podman cannot run a container on this host ($(tail -1 "$work/podman.err")); skipping it (see ../shared/PEERS.md for its figure)" >&2
		pimg=
	fi
fi
hyperfine --style basic -N --warmup 3 --runs "$runs" --export-json "$work/run.json" "${cmds[@]}"
# hyperfine runs each command's batch after the other's, so that drift on a
# shared machine (this VM's neighbours) lands in the ratios of the medians.
# The same commands in rounds, one of each per round in turn, give ratios
# that drift cannot skew: the median over the rounds of each round's ratio.
python3 - "$work" "$img" "$runs" "${pimg:+$pcmd}" <<'PY' >"$work/rounds.txt"
import statistics, subprocess, sys, time
work, img, rounds, podman = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
k = f"bin/karman --dir {work}/k --config-dir {work}/etc run --net=none"
cmds = {
    "karman run": f"{k} {img} --exec /bin/true",
    "karman run, isolators off": f"{k} --insecure-options=capabilities,paths,seccomp {img} --exec /bin/true",
    "runc run": f"runc run -b {work}/bundle karman-bench",
}
if podman:
    cmds["podman run"] = podman
gc = f"bin/karman --dir {work}/k gc --grace-period=0".split()
times = {name: [] for name in cmds}
for i in range(rounds):
    for name, cmd in cmds.items():
        subprocess.run(gc, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t = time.perf_counter()
        r = subprocess.run(cmd.split(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times[name].append((time.perf_counter() - t) * 1000)
        if r.returncode != 0:
            sys.exit(f"{name} failed ({r.returncode}): {r.stderr}")
base = times["karman run"]
for name, ts in times.items():
    ratios = [b / t for b, t in zip(base, ts)]
    print(f"{name}\t{statistics.median(ts):.1f}\t{statistics.median(ratios):.2f}")
PY

# Memory of one running pod.
bin/karman --dir "$work/k" --config-dir "$work/etc" run --net=none --uuid-file-save "$work/uuid" "$img" --exec /bin/sleep -- 1000 >/dev/null 2>&1 &
pids+=($!)
disown
for _ in $(seq 100); do [ -s "$work/uuid" ] && [ -s "$work/k/pods/run/$(cat "$work/uuid")/state/init.pid" ] && break; sleep 0.05; done
sup=${pids[0]}
# karman execs the supervisor, karman-stage1 (docs/pods.md): measure it
# once it has settled.
sleep 0.3
pss() { awk '/^Pss:/ {s+=$2} END {print s+0}' "/proc/$1/smaps_rollup"; }
init=$(cat "$work/k/pods/run/$(cat "$work/uuid")/state/init.pid")
kpss=$(( $(pss "$sup") + $(pss "$init") ))
cpss=
if [ -n "${pimg:-}" ]; then
	podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 -d --name karman-bench-mem --network none "$pimg" /bin/sleep 1000 >/dev/null
	conmon=$(podman inspect --format '{{.State.ConmonPid}}' karman-bench-mem)
	cpss=$(pss "$conmon")
fi
# And again once the pod has run long enough for the Go runtime's periodic
# garbage collection (every two minutes) to have run, were it on.
steady=${BENCH_STEADY_SECONDS:-130}
kpss2=
if [ "$steady" -gt 0 ]; then
	echo "waiting ${steady}s for the steady-state memory of the pod..." >&2
	sleep "$steady"
	kpss2=$(( $(pss "$sup") + $(pss "$init") ))
fi
python3 - "$work/run.json" "$kpss" "$cpss" "$kpss2" "$steady" "$work/rounds.txt" <<'PY'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
k = r["karman run"]
print("hyperfine, one batch per command:")
for name, v in r.items():
    print(f"  {name:26s} median {v:7.1f} ms   karman/{name} = {k / v:5.2f}")
print("in rounds, one of each command per round (median of the per-round ratios):")
for line in open(sys.argv[6]):
    name, median, ratio = line.rstrip("\n").split("\t")
    print(f"  {name:26s} median {float(median):7.1f} ms   karman/{name} = {float(ratio):5.2f}")
print("targets: karman <= 0.6x runc, <= 0.1x podman")
kp = int(sys.argv[2])
print(f"memory of one running pod: karman supervisor + init PSS = {kp / 1024:.1f} MiB (target <= 4 MiB)")
if sys.argv[4]:
    print(f"memory of the same pod after {sys.argv[5]} s: karman supervisor + init PSS = {int(sys.argv[4]) / 1024:.1f} MiB (target <= 4 MiB)")
if sys.argv[3]:
    print(f"podman's conmon PSS = {int(sys.argv[3]) / 1024:.1f} MiB")
PY
