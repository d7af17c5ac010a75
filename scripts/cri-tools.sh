#!/usr/bin/env bash
# Builds critest and crictl of sigs.k8s.io/cri-tools once per version and
# keeps them in $KARMAN_CACHE (default /var/cache/karman), as
# cri-tools-VERSION/{critest,crictl}; prints that directory. A warm run
# builds nothing.
#
#   scripts/cri-tools.sh            build (if needed) and print the directory
#
# critest is a Go test binary (the module's cmd/critest has only test
# files), so it cannot be `go install`ed: the module's source is copied out
# of the module cache, made writable, and built with `go test -c`.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
version=${CRI_TOOLS_VERSION:-v1.37.0}
cache=${KARMAN_CACHE:-/var/cache/karman}
out="$cache/cri-tools-$version"

if [ -x "$out/critest" ] && [ -x "$out/crictl" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.cri-tools-$version.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
echo "cri-tools: building critest and crictl $version (a few minutes the first time)" >&2
src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/cri-tools@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -d "$src" ]; then
	echo "cri-tools: go mod download sigs.k8s.io/cri-tools@$version gave no source directory" >&2
	exit 1
fi
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
mkdir "$work/bin"
(
	cd "$work/src"
	ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$version"
	CGO_ENABLED=0 go test -c -trimpath -ldflags "$ldflags" -o "$work/bin/critest" ./cmd/critest
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$work/bin/crictl" ./cmd/crictl
)
# Publish both at once: a half-built directory is never seen.
rm -rf "$out"
mv "$work/bin" "$out"
echo "$out"
