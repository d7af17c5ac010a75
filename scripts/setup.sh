#!/usr/bin/env bash
# Installs what karman's demo, tests and benchmarks need on Debian 12:
# Debian packages (only those missing) and the Go modules. Idempotent.
#
#   scripts/setup.sh           what `make demo` needs
#   scripts/setup.sh --tests   and what the tests need: the real cosign
#   scripts/setup.sh --bench   and the peers the benchmarks run beside karman
#
# --tests and --bench also build critest and crictl (scripts/cri-tools.sh),
# unpack Debian's dynamic busybox for the CRI look-alike images, and build
# the Kubernetes components and etcd (scripts/k8s-build.sh, about 10 minutes
# the first time); all are kept in /var/cache/karman.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in
"" | --tests | --bench) ;;
*)
	echo "usage: scripts/setup.sh [--tests|--bench]" >&2
	exit 2
	;;
esac

# busybox-static: the test and demo images; docker-registry: the loopback
# registry; containernetworking-plugins: the CNI tests; iproute2, iptables:
# commands the network tests run (ip, iptables-save).
packages=(busybox-static docker-registry containernetworking-plugins iproute2 iptables)
if [ "$mode" = --bench ]; then
	packages+=(skopeo umoci hyperfine runc podman python3 nftables containerd)
fi
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: missing Debian packages: ${missing[*]}; run this as root to install them (apt-get install ${missing[*]})" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a registry service on install where an init system runs;
# the tests start their own on loopback ports and need no system service.
export PATH="$PATH:/usr/local/go/bin"
go mod download

# The real cosign, for the signature interoperability tests only (a few
# minutes to build the first time; kept in GOPATH/bin afterwards).
if [ "$mode" = --tests ]; then
	gobin=$(go env GOPATH)/bin
	if ! command -v cosign >/dev/null && [ ! -x "$gobin/cosign" ]; then
		echo "setup: building cosign v2.6.5 for the interoperability tests (takes a few minutes)" >&2
		go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
	fi
fi

# The CRI conformance harness (docs/kubernetes.md, "Conformance"): critest
# and crictl, and Debian's dynamically linked busybox for the look-alike
# images (tests/testimage/cri.go). The package conflicts with busybox-static,
# so it is downloaded and unpacked into the cache, not installed.
if [ "$mode" = --tests ] || [ "$mode" = --bench ]; then
	./scripts/cri-tools.sh >/dev/null
	bbdir=/var/cache/karman/busybox-dynamic
	if [ ! -x "$bbdir/bin/busybox" ]; then
		echo "setup: unpacking Debian's dynamic busybox into $bbdir" >&2
		tmp=$(mktemp -d)
		chmod 0777 "$tmp" # apt-get download runs as _apt where it can
		if ! (cd "$tmp" && apt-get download -q busybox >/dev/null 2>&1); then
			apt-get update -q >/dev/null
			(cd "$tmp" && apt-get download -q busybox >/dev/null)
		fi
		dpkg-deb -x "$tmp"/busybox_*.deb "$tmp/x"
		mkdir -p "$bbdir/bin"
		install -m 0755 "$tmp/x/bin/busybox" "$bbdir/bin/busybox.new"
		mv "$bbdir/bin/busybox.new" "$bbdir/bin/busybox"
		rm -rf "$tmp"
	fi
fi

# The Kubernetes components and etcd for the kubelet and cluster tests
# (docs/kubernetes.md, "Building the Kubernetes components"), once per
# version.
if [ "$mode" = --tests ] || [ "$mode" = --bench ]; then
	./scripts/k8s-build.sh >/dev/null
fi
