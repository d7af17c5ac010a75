# Sourced by the start benchmarks (run.sh, apps.sh): with $work set and k()
# defined (karman on $work/k and $work/etc), builds the busybox test image
# as an OCI layout, trusts it by its own scope only (built here, unsigned),
# stores it, and makes a runc bundle of the same rootfs that runs
# /bin/true. Sets img.
bin/karman-testimage --kind busybox --layout "$work/layout" --tag latest >/dev/null
img="oci:$work/layout:latest"
k trust add --type insecure-accept-anything --scope "oci:$work/layout" >/dev/null
k fetch "$img" >/dev/null
mkdir -p "$work/bundle/rootfs"
cp -a "$work"/k/images/layers/sha256/*/. "$work/bundle/rootfs/"
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]; c["process"]["terminal"] = False
c["process"]["rlimits"] = []
json.dump(c, open(p, "w"))
PY
