# Shared by scripts/conformance.sh and tests/bench/cri.sh (sourced, bash):
# a private work directory, the loopback registry of critest's look-alike
# images, and a CRI runtime under test (a fresh karman agent, or Debian's
# containerd on private dirs and sockets), all stopped by cri_cleanup.
#
# Nothing leaves loopback: the registry listens on 127.0.0.1, the runtime
# reaches the public image names through it (karman: CONFIG-DIR/
# registries.conf; containerd: its registry mirrors), and runs with
# HTTP_PROXY/HTTPS_PROXY at a dead loopback port, so any other fetch fails.
#
# Variables: ROOT (the checkout), BIN (its bin/, as `make build` fills it),
# W (the work directory), CRI_SOCK (the runtime's CRI socket), REG (the
# registry's 127.0.0.1:PORT), CRI_TOOLS (critest and crictl). tests/k8s
# starts its Kubernetes nodes with these functions too.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$ROOT/bin}
DEAD_PROXY=http://127.0.0.1:9
CRI_BRIDGE=kcri0
CRI_SUBNET=10.213.0.0/16
_cri_pids=()

cri_log() { echo "cri: $*" >&2; }

# cri_workdir: a fresh private work directory in $W, removed by cri_cleanup
# unless KEEP_WORKDIR=1.
cri_workdir() {
	W=$(mktemp -d "${TMPDIR:-/tmp}/karman-cri.XXXXXX")
	chmod 0755 "$W"
	trap cri_cleanup EXIT
	trap 'exit 130' INT TERM
}

# cri_tools: critest and crictl, built once (scripts/cri-tools.sh).
cri_tools() {
	CRI_TOOLS=$("$ROOT/scripts/cri-tools.sh")
}

# cri_registry: Debian's docker-registry on a free loopback port with the
# look-alike images, signed with a fresh test key ($W/key/cosign.pub).
cri_registry() {
	for b in karman-testimage karman-lookalike; do
		if [ ! -x "$BIN/$b" ]; then
			echo "cri: $BIN/$b missing: run make build" >&2
			return 1
		fi
	done
	"$BIN/karman-testimage" --serve-registry "$W/registry" --gen-key "$W/key" \
		--cri-images REGISTRY --sign-key "$W/key/cosign.key" >"$W/registry.out" 2>"$W/registry.err" &
	_cri_pids+=($!)
	local pid=$! i
	for i in $(seq 600); do
		if grep -q '^CRI-IMAGES=' "$W/registry.out" 2>/dev/null; then
			REG=$(sed -n 's/^REGISTRY=//p' "$W/registry.out")
			cri_log "registry on $REG: $(sed -n 's/^CRI-IMAGES=//p' "$W/registry.out") look-alike references pushed"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$W/registry.err" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "cri: the registry did not come up in 60s" >&2
	cat "$W/registry.err" >&2
	return 1
}

# _cri_wait_socket SOCK PID NAME LOG: until crictl can talk to SOCK.
_cri_wait_socket() {
	local i
	for i in $(seq 300); do
		if [ -S "$1" ] && "$CRI_TOOLS/crictl" --runtime-endpoint "unix://$1" --timeout 2s version >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$2" 2>/dev/null; then
			echo "cri: $3 exited; its log:" >&2
			tail -50 "$4" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "cri: $3 does not answer on $1 after 30s; its log:" >&2
	tail -50 "$4" >&2
	return 1
}

# cri_containerd: Debian's containerd and runc on private directories and
# sockets (cgroupfs, restrict_oom_score_adj, a CNI bridge of its own,
# mirrors at the loopback registry).
cri_containerd() {
	if ! command -v containerd >/dev/null; then
		echo "cri: containerd missing: apt-get install containerd (scripts/setup.sh --bench)" >&2
		return 1
	fi
	local d=$W/containerd
	mkdir -p "$d/cni" "$d/root" "$d/state"
	cat >"$d/cni/10-kcri.conflist" <<-EOF
		{"cniVersion": "1.0.0", "name": "kcri", "plugins": [
		  {"type": "bridge", "bridge": "$CRI_BRIDGE", "isGateway": true, "ipMasq": false,
		   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$CRI_SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
		  {"type": "portmap", "capabilities": {"portMappings": true}},
		  {"type": "loopback"}]}
	EOF
	local mirrors="" r
	for r in registry.k8s.io k8s.gcr.io gcr.io; do
		mirrors+="[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"$r\"]
  endpoint = [\"http://$REG\"]
"
	done
	cat >"$d/config.toml" <<-EOF
		version = 2
		root = "$d/root"
		state = "$d/state"
		disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
		[grpc]
		  address = "$d/containerd.sock"
		[ttrpc]
		  address = "$d/containerd.sock.ttrpc"
		[debug]
		  address = "$d/debug.sock"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$d/opt"
		[plugins."io.containerd.grpc.v1.cri"]
		  restrict_oom_score_adj = true
		  sandbox_image = "registry.k8s.io/pause:3.9"
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
		  enable_selinux = false
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        SystemdCgroup = false
		        Root = "$d/runc"
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$d/cni"
		$mirrors
	EOF
	HTTP_PROXY=$DEAD_PROXY HTTPS_PROXY=$DEAD_PROXY http_proxy=$DEAD_PROXY https_proxy=$DEAD_PROXY NO_PROXY= no_proxy= \
		containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
	_cri_pids+=($!)
	CRI_RUNTIME_PID=$!
	CRI_SOCK=$d/containerd.sock
	CRI_RUNTIME=containerd
	_cri_wait_socket "$CRI_SOCK" "$CRI_RUNTIME_PID" containerd "$d/containerd.log"
}

# cri_karman: a fresh karman agent serving the CRI on $W/karman/cri.sock,
# on its own data and configuration directories: its policy trusts the
# test key for the public names, its registries.conf sends them to the
# loopback registry.
cri_karman() {
	local d=$W/karman full=$BIN/karman-full
	if [ ! -x "$full" ]; then
		echo "cri: $full missing: run make build" >&2
		return 1
	fi
	mkdir -p "$d/etc" "$d/data"
	# The caller's network configuration (network.json), if it gives one:
	# tests/k8s gives each node a bridge, subnet and netns directory of its own.
	[ -z "${KARMAN_NETWORK_JSON:-}" ] || printf '%s\n' "$KARMAN_NETWORK_JSON" >"$d/etc/network.json"
	local s
	for s in registry.k8s.io k8s.gcr.io gcr.io/k8s-staging-cri-tools; do
		"$full" --config-dir "$d/etc" trust add --scope "$s" "$W/key/cosign.pub" >/dev/null
	done
	cat >"$d/etc/registries.conf" <<-EOF
		# The public names critest pulls, served by the loopback registry.
		[[registry]]
		prefix = "registry.k8s.io"
		location = "$REG"
		insecure = true

		[[registry]]
		prefix = "k8s.gcr.io"
		location = "$REG"
		insecure = true

		[[registry]]
		prefix = "gcr.io"
		location = "$REG"
		insecure = true
	EOF
	CRI_SOCK=$d/cri.sock
	HTTP_PROXY=$DEAD_PROXY HTTPS_PROXY=$DEAD_PROXY http_proxy=$DEAD_PROXY https_proxy=$DEAD_PROXY NO_PROXY= no_proxy= \
		"$full" --dir "$d/data" --config-dir "$d/etc" agent --listen "unix://$d/agent.sock" \
		--cri-socket "$CRI_SOCK" ${KARMAN_AGENT_FLAGS:-} >"$d/agent.log" 2>&1 &
	_cri_pids+=($!)
	CRI_RUNTIME_PID=$!
	CRI_RUNTIME=karman
	_cri_wait_socket "$CRI_SOCK" "$CRI_RUNTIME_PID" "the karman agent" "$d/agent.log"
}

# cri_crictl ARGS: crictl against the runtime under test.
cri_crictl() {
	"$CRI_TOOLS/crictl" --runtime-endpoint "unix://$CRI_SOCK" --image-endpoint "unix://$CRI_SOCK" --timeout 60s "$@"
}

# cri_cleanup: remove every sandbox the runtime still has, stop the runtime
# and the registry (by PID), take away what containerd leaves on the host.
cri_cleanup() {
	local rc=$?
	set +e
	if [ -n "${CRI_RUNTIME_PID:-}" ] && kill -0 "$CRI_RUNTIME_PID" 2>/dev/null; then
		cri_crictl rmp --force --all >/dev/null 2>&1
		cri_crictl rm --force --all >/dev/null 2>&1
	fi
	local i p
	for ((i = ${#_cri_pids[@]} - 1; i >= 0; i--)); do
		p=${_cri_pids[i]}
		kill -TERM "$p" 2>/dev/null || continue
		for _ in $(seq 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ "${CRI_RUNTIME:-}" = karman ] && [ -x "$BIN/karman-full" ]; then
		"$BIN/karman-full" --dir "$W/karman/data" gc --grace-period=0 >/dev/null 2>&1
	fi
	if [ -n "${W:-}" ] && [ -d "$W" ]; then
		grep -o " $W/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
		ip link del "$CRI_BRIDGE" 2>/dev/null
		if [ "${KEEP_WORKDIR:-0}" = 1 ]; then
			echo "cri: work directory kept: $W" >&2
		else
			rm -rf "$W"
		fi
	fi
	return $rc
}
