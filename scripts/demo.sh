#!/usr/bin/env bash
# The main job on a fresh machine: build a busybox image locally, serve it
# from Debian's registry on loopback, sign it and trust its key, fetch it
# with karman (verifying the signature first) and run a pod of it.
# Everything lives under a temporary directory that is removed at the end
# (set KEEP=1 to keep it).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/karman-demo.XXXXXX)
regpid=
cleanup() {
	[ -n "$regpid" ] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null || true
	[ "${KEEP:-}" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
karman() { bin/karman --dir "$work/karman" --config-dir "$work/etc" "$@"; }

bin/karman-testimage --serve-registry "$work/registry" >"$work/registry.out" 2>"$work/registry.err" &
regpid=$!
for _ in $(seq 100); do grep -q '^REGISTRY=' "$work/registry.out" 2>/dev/null && break; sleep 0.1; done
reg=$(sed -n 's/^REGISTRY=//p' "$work/registry.out")
[ -n "$reg" ] || { cat "$work/registry.err" >&2; exit 1; }

echo "== a signing key, trusted for the repository prefix $reg/demo only"
bin/karman-testimage --gen-key "$work/keys"
karman trust add --scope "$reg/demo" "$work/keys/cosign.pub"
karman trust list
echo "== building a busybox image, pushing it to the loopback registry $reg and signing it"
bin/karman-testimage --kind multilayer --push "$reg/demo/busybox:latest" --sign-key "$work/keys/cosign.key" --sign-format both
echo "== karman verify $reg/demo/busybox:latest (resolves and checks the signatures, fetches nothing)"
karman verify "$reg/demo/busybox:latest"
echo "== an unsigned image is refused, and nothing of it is stored"
bin/karman-testimage --kind busybox --push "$reg/demo/unsigned:latest" >/dev/null
if karman fetch "$reg/demo/unsigned:latest"; then echo "demo: the unsigned image was accepted" >&2; exit 1; fi
echo "== karman fetch $reg/demo/busybox:latest"
karman fetch "$reg/demo/busybox:latest"
echo "== karman image list"
karman image list
echo "== the extracted layers, shared by every image that uses them"
ls "$work/karman/images/layers/sha256"
echo "== karman run: a pod from that image on the default network (its exit status is the app's)"
karman run --hostname demo "$reg/demo/busybox:latest" --exec /bin/sh -- -c 'echo "hello from $(hostname), pid $$ in the pod"; cat /etc/motd; ls /data; ip -4 -o addr show dev eth0'
echo "== karman list"
karman list
karman gc --grace-period=0 >/dev/null
