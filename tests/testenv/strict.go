package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// StrictEnv names the variable that turns strict mode on ("1" or "true")
// or off ("0" or "false"), whatever $CI says. .ci/run sets it to 1.
const StrictEnv = "KARMAN_TEST_STRICT"

// Prefixes of the messages Missing and SkipAllowed skip or fail with. The
// skip summary of `make test` (tests/testreport) sorts skips by them.
const (
	MissingPrefix = "missing prerequisite: "
	AllowedPrefix = "allowed skip: "
)

// Strict reports whether a missing prerequisite fails a test instead of
// skipping it: $KARMAN_TEST_STRICT is 1 or true, or it is unset and $CI is
// true or 1 (as CI services set it).
func Strict() bool {
	if v, ok := os.LookupEnv(StrictEnv); ok && v != "" {
		return isTrue(v)
	}
	return isTrue(os.Getenv("CI"))
}

func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// Missing stops t because a prerequisite is missing: what names it (and
// why the test needs it), install says how to get it ("apt-get install
// busybox-static"). In strict mode (see Strict) t fails; otherwise it is
// skipped. The message starts with MissingPrefix either way.
//
// Every test that cannot run on the host it finds calls Missing, or
// SkipAllowed for a reason on the allow-list; never t.Skip directly.
func Missing(t testing.TB, what, install string) {
	t.Helper()
	msg := MissingPrefix + what
	if install != "" {
		msg += "; " + install
	}
	if Strict() {
		t.Fatalf("%s (strict mode, $%s or $CI: a missing prerequisite fails the test)", msg, StrictEnv)
		return
	}
	t.Skip(msg)
}

// RequireRoot stops t (see Missing) unless the effective user is root; why
// says what the test does that needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root ("+why+")", "run the tests as root, as CI does")
	}
}

// RequireCommand returns the path of the program name in $PATH, or stops
// t (see Missing) with install as the hint.
func RequireCommand(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "the "+name+" command", install)
		return ""
	}
	return p
}

// RequireFile stops t (see Missing) unless path exists; install is the hint.
func RequireFile(t testing.TB, path, install string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, path, install)
	}
}

// Allowed is an entry of the allow-list: a reason a test may skip even in
// strict mode, because the host, not its set-up, lacks what the test
// needs. The list is closed: add an entry here, and to README.md
// ("Testing"), only for a property an install cannot change.
type Allowed string

// The allow-list.
const (
	// CgroupLayout: the host's cgroup layout (v1, hybrid or pure v2) is
	// not the one the test exercises, e.g. no cgroup2 hierarchy on a v1
	// host, no v1 cpu hierarchy on a v2 host. Both layouts are in the
	// field; the other one's code runs in unit tests.
	CgroupLayout Allowed = "this host's cgroup layout"
	// KernelLacks: the running kernel lacks the feature (not built in,
	// or too old), e.g. no transparent huge pages.
	KernelLacks Allowed = "the kernel lacks the feature"
	// Short: `go test -short` asked to leave out a long test.
	Short Allowed = "go test -short"
)

// SkipAllowed skips t, in strict mode too, for a reason on the allow-list;
// detail says what exactly the host lacks. The message starts with
// AllowedPrefix.
func SkipAllowed(t testing.TB, why Allowed, detail string) {
	t.Helper()
	t.Skip(AllowedPrefix + string(why) + ": " + detail)
}

// SkipIfShort skips t under `go test -short` (an allowed skip); what says
// what makes the test long.
func SkipIfShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		SkipAllowed(t, Short, what)
	}
}
