#!/bin/sh
# Runs every Go fuzz target of the module (func FuzzXxx in a _test.go file),
# one after the other, each for FUZZTIME (default 30s) with FUZZPARALLEL
# workers (default 1). Plain `go test` runs only their seed corpora.
# A crasher is written to the package's testdata/fuzz/FuzzXxx/ and the run
# goes on with the next target; the exit status says whether any failed.
# See docs/fuzzing.md.
set -u
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZPARALLEL=${FUZZPARALLEL:-1}
cd "$(dirname "$0")/.." || exit 1

targets=$(grep -rl --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' . | grep -v /testdata/ | sort | while read -r f; do
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed "s|^func |$(dirname "$f") |"
done)
echo "fuzz targets, $FUZZTIME each:"
echo "$targets" | sed 's/^/  /'
failed=""
while read -r pkg target; do
	echo "== $target ($pkg) for $FUZZTIME"
	if ! CGO_ENABLED=0 $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" -parallel "$FUZZPARALLEL" "$pkg"; then
		failed="$failed $pkg:$target"
	fi
done <<EOT
$targets
EOT
if [ -n "$failed" ]; then
	echo "fuzzing found failures in:$failed (crashers are in testdata/fuzz of those packages)" >&2
	exit 1
fi
echo "all fuzz targets ran $FUZZTIME without a failure"
