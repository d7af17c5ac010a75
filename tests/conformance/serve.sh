#!/usr/bin/env bash
# Serves a CRI runtime exactly as scripts/conformance.sh starts it (lib.sh:
# the loopback registry of signed look-alike images, then a fresh karman
# agent with registries.conf and the test key trusted, or Debian's
# containerd on private dirs) until its standard input closes or it gets
# SIGTERM, then stops it all (cri_cleanup). The one-node Kubernetes
# cluster (tests/k8s) runs its kubelet on it.
#
#   tests/conformance/serve.sh karman|containerd
#
# Once up it prints KEY=VALUE lines (W, REG, CRI_SOCK, CRI_RUNTIME_PID,
# KARMAN_DATA, KARMAN_CONFIG, CRI_TOOLS, KEY) and then READY.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

runtime=${1:-karman}
case "$runtime" in
karman | containerd) ;;
*) echo "usage: tests/conformance/serve.sh karman|containerd" >&2; exit 2 ;;
esac
cri_workdir
cri_tools
cri_registry
"cri_$runtime"
echo "W=$W"
echo "REG=$REG"
echo "CRI_SOCK=$CRI_SOCK"
echo "CRI_RUNTIME_PID=$CRI_RUNTIME_PID"
echo "KARMAN_DATA=$W/karman/data"
echo "KARMAN_CONFIG=$W/karman/etc"
echo "CRI_TOOLS=$CRI_TOOLS"
echo "KEY=$W/key/cosign.key"
echo READY
read -r _ || true
