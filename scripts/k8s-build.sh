#!/usr/bin/env bash
# Builds the Kubernetes components (kubelet, kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl) and etcd once per version from the
# wrapper modules in tests/k8s/build and keeps them in $KARMAN_CACHE
# (default /var/cache/karman) as k8s-VERSION/ and etcd-VERSION/; prints
# those two directories, one a line. A warm run builds nothing.
#
#   scripts/k8s-build.sh            build (if needed) and print the directories
#
# The versions are those the wrapper modules require (tests/k8s/build/go.mod
# and tests/k8s/build/etcd/go.mod). A build is written to a temporary
# directory beside the cache entry and renamed into place once every binary
# of it is built, so a half-built directory is never seen; concurrent runs
# wait for each other. The build is CPU-heavy (about 10 minutes cold on two
# cores) and runs under nice. docs/kubernetes.md, "Building the Kubernetes
# components".
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

cache=${KARMAN_CACHE:-/var/cache/karman}
kmod=tests/k8s/build
emod=tests/k8s/build/etcd
k8s_version=$(sed -n 's/^require k8s\.io\/kubernetes \(v[^ ]*\)$/\1/p' "$kmod/go.mod")
etcd_version=$(sed -n 's/^require go\.etcd\.io\/etcd\/server\/v3 \(v[^ ]*\)$/\1/p' "$emod/go.mod")
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ]; then
	echo "k8s-build: cannot read the versions from $kmod/go.mod and $emod/go.mod (a one-line require of k8s.io/kubernetes and of go.etcd.io/etcd/server/v3)" >&2
	exit 1
fi
k8s_out="$cache/k8s-$k8s_version"
etcd_out="$cache/etcd-$etcd_version"
k8s_cmds=(kubelet kube-apiserver kube-scheduler kube-controller-manager kubectl)

built() { # DIR BINARY...: whether DIR holds every BINARY
	local dir=$1 b
	shift
	for b in "$@"; do
		[ -x "$dir/$b" ] || return 1
	done
}

if built "$k8s_out" "${k8s_cmds[@]}" && built "$etcd_out" etcd; then
	echo "$k8s_out"
	echo "$etcd_out"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.k8s-build.lock"
flock 9 # another run may be building; it leaves the cache warm

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -mod=readonly"
work=
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

# publish TMPDIR DIR: renames the finished TMPDIR to DIR.
publish() {
	rm -rf "$2"
	mv "$1" "$2"
}

if ! built "$k8s_out" "${k8s_cmds[@]}"; then
	work=$(mktemp -d "$cache/.k8s-$k8s_version.XXXXXX")
	chmod 0755 "$work"
	minor=${k8s_version#v*.}
	minor=${minor%%.*}
	major=${k8s_version#v}
	major=${major%%.*}
	ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	pkgs=()
	for c in "${k8s_cmds[@]}"; do
		pkgs+=("k8s.io/kubernetes/cmd/$c")
	done
	echo "k8s-build: building ${k8s_cmds[*]} $k8s_version into $k8s_out (about 10 minutes the first time)" >&2
	start=$SECONDS
	(cd "$kmod" && nice -n 10 go build -ldflags "$ldflags" -o "$work/" "${pkgs[@]}")
	built "$work" "${k8s_cmds[@]}"
	publish "$work" "$k8s_out"
	work=
	echo "k8s-build: Kubernetes $k8s_version built in $((SECONDS - start)) s" >&2
fi

if ! built "$etcd_out" etcd; then
	work=$(mktemp -d "$cache/.etcd-$etcd_version.XXXXXX")
	chmod 0755 "$work"
	echo "k8s-build: building etcd $etcd_version into $etcd_out" >&2
	start=$SECONDS
	(cd "$emod" && nice -n 10 go build -ldflags "-s -w" -o "$work/etcd" go.etcd.io/etcd/server/v3)
	publish "$work" "$etcd_out"
	work=
	echo "k8s-build: etcd $etcd_version built in $((SECONDS - start)) s" >&2
fi

echo "$k8s_out"
echo "$etcd_out"
