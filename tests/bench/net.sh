#!/usr/bin/env bash
# Network start benchmark: `karman run IMAGE /bin/true` (image stored) on
# --net=none, on the default network, and on a CNI network of Debian's
# bridge and host-local plugins, beside `podman run --rm` on its default
# network (CNI backend on Debian 12). Prints medians and ratios.
# Targets: the default network adds at most 10 ms to a pod's start; karman
# with the default network takes at most 0.15x podman's time.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${BENCH_RUNS:-30}
id=$$
work=/var/tmp/karman-bench-net-$id
bridge=kb$id
cnibridge=kbc$id
netns=/run/karman/bench-netns-$id
mkdir -p "$work/etc/net.d"
cleanup() {
	bin/karman --dir "$work/k" --config-dir "$work/etc" gc --grace-period=0 >/dev/null 2>&1 || true
	ip link del "$bridge" 2>/dev/null || true
	ip link del "$cnibridge" 2>/dev/null || true
	nft delete table ip "karman-$bridge" 2>/dev/null || true
	umount -l "$netns" 2>/dev/null || true
	rm -rf "$work" "$netns" "/run/karman/bench-ipam-$id"
}
trap cleanup EXIT
k() { bin/karman --dir "$work/k" --config-dir "$work/etc" "$@"; }

# Subnets of the benchmark's own, used on this machine only.
sub=$(( id % 200 + 20 ))
cat >"$work/etc/network.json" <<JSON
{"version": 1, "default": {"bridge": "$bridge", "subnet": "10.234.$sub.0/24"},
 "netnsDir": "$netns", "stateDir": "/run/karman/bench-ipam-$id"}
JSON
cat >"$work/etc/net.d/50-bench.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "benchcni", "plugins": [
 {"type": "bridge", "bridge": "$cnibridge", "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.235.$sub.0/24"}]], "dataDir": "$work/cni"}}]}
JSON

bin/karman-testimage --kind busybox --layout "$work/layout" --tag latest >/dev/null
img="oci:$work/layout:latest"
k trust add --type insecure-accept-anything --scope "oci:$work/layout" >/dev/null
k fetch "$img" >/dev/null
run="bin/karman --dir $work/k --config-dir $work/etc run"
gc="bin/karman --dir $work/k --config-dir $work/etc gc --grace-period=0"
cmds=(--prepare "$gc"
	-n "karman --net=none" "$run --net=none $img --exec /bin/true"
	-n "karman --net=default" "$run --net=default $img --exec /bin/true"
	-n "karman --net=benchcni (CNI bridge)" "$run --net=benchcni $img --exec /bin/true")
if command -v podman >/dev/null; then
	pimg=$(podman pull -q "oci:$work/layout:latest")
	pcmd="podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --rm $pimg /bin/true"
	if [ "$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)" = cni ] && $pcmd >/dev/null 2>"$work/podman.err"; then
		cmds+=(-n "podman run --rm (CNI)" "$pcmd")
	else
		echo "podman cannot run a container with its CNI backend here ($(tail -1 "$work/podman.err" 2>/dev/null)); skipping it (see ../shared/PEERS.md)" >&2
	fi
fi
hyperfine --style basic -N --warmup 3 --runs "$runs" --export-json "$work/net.json" "${cmds[@]}"

# hyperfine runs each command's runs in a row: on a shared machine a load
# spike lands on one command. The cost of the default network is also
# measured in pairs, none and default back to back in alternating order,
# as the median of the pairs' differences.
python3 - "$runs" "$run" "$img" "$gc" >"$work/pairs.txt" <<'PY'
import statistics, subprocess, sys, time
runs, run, img, gc = int(sys.argv[1]), sys.argv[2].split(), sys.argv[3], sys.argv[4].split()
def once(net):
    t = time.perf_counter()
    subprocess.run(run + ["--net=" + net, img, "--exec", "/bin/true"], check=True)
    return (time.perf_counter() - t) * 1000
d = []
for i in range(runs):
    subprocess.run(gc, check=True, stdout=subprocess.DEVNULL)
    if i % 2:
        b = once("default"); a = once("none")
    else:
        a = once("none"); b = once("default")
    d.append(b - a)
print(f"{statistics.median(d):.1f}")
PY
python3 - "$work/net.json" "$(cat "$work/pairs.txt")" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
r = {x["command"]: x["median"] * 1000 for x in res}
m = {x["command"]: x["min"] * 1000 for x in res}
none, dflt = r["karman --net=none"], r["karman --net=default"]
for name, v in r.items():
    print(f"{name:36s} median {v:7.1f} ms (min {m[name]:7.1f})   karman --net=default / this = {dflt / v:5.2f}")
print(f"the default network adds {float(sys.argv[2]):.1f} ms to a pod's start (median of paired runs; "
      f"{dflt - none:.1f} ms between the medians above, {m['karman --net=default'] - m['karman --net=none']:.1f} ms between the minimums; target <= 10 ms)")
cni = r["karman --net=benchcni (CNI bridge)"]
print(f"the CNI bridge network adds {cni - none:.1f} ms")
p = r.get("podman run --rm (CNI)")
if p:
    print(f"karman --net=default / podman run --rm (CNI) = {dflt / p:.2f} (target <= 0.15)")
PY
