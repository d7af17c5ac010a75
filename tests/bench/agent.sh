#!/usr/bin/env bash
# Node agent benchmark: 100 tasks (--net=none, sleep) launched concurrently
# through `karman agent`'s API until all run (tasks per second), with the
# latency of GET /v1/node during that storm; beside `podman run -d` of the
# same 100 containers at the same concurrency. Everything is removed after.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${BENCH_TASKS:-100}
conc=${BENCH_CONCURRENCY:-100}
work=/var/tmp/karman-bench-agent-$$
mkdir -p "$work"
agent_pid=
podman_names=()
cleanup() {
	if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
	# Whatever the bench left running (it deletes its tasks itself).
	for u in $(bin/karman --dir "$work/k" list --no-legend --full 2>/dev/null | awk '$5 == "running" {print $1}'); do
		bin/karman --dir "$work/k" stop --force "$u" >/dev/null 2>&1 || true
		bin/karman --dir "$work/k" status --wait=30s "$u" >/dev/null 2>&1 || true
	done
	bin/karman --dir "$work/k" gc --grace-period=0 >/dev/null 2>&1 || true
	if [ ${#podman_names[@]} -gt 0 ]; then podman rm -f -t 0 "${podman_names[@]}" >/dev/null 2>&1 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
k() { bin/karman --dir "$work/k" --config-dir "$work/etc" "$@"; }

CGO_ENABLED=0 go build -o bin/karman-agentbench ./tests/cmd/karman-agentbench
bin/karman-testimage --kind busybox --layout "$work/layout" --tag latest >/dev/null
img="oci:$work/layout:latest"
k trust add --type insecure-accept-anything --scope "oci:$work/layout" >/dev/null
k fetch "$img" >/dev/null

# Not through k(): $! must be the agent's own PID.
bin/karman --dir "$work/k" --config-dir "$work/etc" agent --cri-socket= --listen "unix://$work/agent.sock" ${BENCH_AGENT_FLAGS:-} >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 200); do [ -S "$work/agent.sock" ] && break; sleep 0.05; done
bin/karman-agentbench --agent "unix://$work/agent.sock" --image "$img" --n "$n" --concurrency "$conc" >"$work/agent.json"
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=

prate=
if command -v podman >/dev/null; then
	pimg=$(podman pull -q "oci:$work/layout:latest")
	for i in $(seq "$n"); do podman_names+=("karman-bench-agent-$i"); done
	t0=$(date +%s.%N)
	if printf '%s\n' "${podman_names[@]}" | xargs -P "$conc" -I{} podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
		-d --network none --name {} "$pimg" /bin/sleep 100000 >/dev/null 2>"$work/podman.err"; then
		t1=$(date +%s.%N)
		prate=$(python3 -c "print($n / ($t1 - $t0))")
	else
		echo "podman could not run the containers here ($(tail -1 "$work/podman.err")); see ../shared/PEERS.md" >&2
	fi
	podman rm -f -t 0 "${podman_names[@]}" >/dev/null 2>&1 || true
	podman_names=()
fi

python3 - "$work/agent.json" "$prate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"karman agent: {r['tasks']} tasks, {r['concurrency']} at a time, all running in {r['seconds']:.2f} s = {r['tasksPerSecond']:.1f} tasks/s")
print(f"GET /v1/node during the storm: {r['nodeGets']} requests, p50 {r['nodeP50ms']:.2f} ms, p99 {r['nodeP99ms']:.2f} ms, max {r['nodeMaxms']:.2f} ms (target p99 < 10 ms)")
if sys.argv[2]:
    p = float(sys.argv[2])
    print(f"podman run -d: {p:.1f} containers/s   karman/podman = {r['tasksPerSecond'] / p:.2f}x (target >= 3x)")
PY
