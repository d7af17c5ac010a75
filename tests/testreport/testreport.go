package testreport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/karman-project/karman/tests/testenv"
)

// Module is the import path prefix the report leaves out of package names.
const Module = "github.com/karman-project/karman/"

// Kind is the kind of a skip.
type Kind int

// The kinds of skips, in the order the summary lists them.
const (
	Allowed Kind = iota
	Missing
	FuzzInput
	Other
)

func (k Kind) String() string {
	return [...]string{"allowed", "missing prerequisite", "fuzz input", "other"}[k]
}

// Skip is one skipped test.
type Skip struct {
	Package, Test string
	Kind          Kind
	// Reason is what the test logged before it skipped, one line.
	Reason string
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output events
}

// Report collects the skips and failures of one `go test -json` stream.
type Report struct {
	// Strict makes skips of kind Other an error (Err).
	Strict bool

	out    io.Writer
	logs   map[string][]string // output of running tests, by package and test
	Skips  []Skip
	Failed []string // "package Test" of failed tests, and failed packages
}

// New returns a Report that writes to w.
func New(w io.Writer, strict bool) *Report {
	return &Report{Strict: strict, out: w, logs: map[string][]string{}}
}

// Read reads the event stream r to its end, writing as it goes. Lines that
// are not events (a go command's own messages) are written as they are.
func (r *Report) Read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			fmt.Fprintf(r.out, "%s\n", line)
			continue
		}
		r.event(ev)
	}
	return sc.Err()
}

func (r *Report) event(ev event) {
	pkg := strings.TrimPrefix(ev.Package, Module)
	switch {
	case ev.Action == "build-output":
		io.WriteString(r.out, ev.Output)
	case ev.Test == "":
		if ev.Action == "output" && ev.Output != "PASS\n" {
			io.WriteString(r.out, ev.Output)
		} else if ev.Action == "fail" {
			r.Failed = append(r.Failed, pkg)
			r.flush(pkg)
		}
	default:
		key := pkg + " " + ev.Test
		switch ev.Action {
		case "output":
			r.logs[key] = append(r.logs[key], ev.Output)
		case "fail":
			io.WriteString(r.out, strings.Join(r.logs[key], ""))
			r.Failed = append(r.Failed, key)
			delete(r.logs, key)
		case "pass":
			delete(r.logs, key)
		case "skip":
			r.Skips = append(r.Skips, classify(pkg, ev.Test, r.logs[key]))
			delete(r.logs, key)
		}
	}
}

// flush writes the output of the tests of pkg that never finished (the
// test binary panicked or timed out in them).
func (r *Report) flush(pkg string) {
	var keys []string
	for k := range r.logs {
		if strings.HasPrefix(k, pkg+" ") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(r.out, "-- unfinished: %s\n%s", k, strings.Join(r.logs[k], ""))
		delete(r.logs, k)
	}
}

// framing matches the lines the testing package writes around a test's own.
var framing = regexp.MustCompile(`^(=== (RUN|PAUSE|CONT|NAME)|--- (SKIP|PASS|FAIL))`)

// logPrefix is the "file_test.go:12: " of a logged line.
var logPrefix = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

func classify(pkg, test string, log []string) Skip {
	var lines []string
	for _, l := range log {
		l = strings.TrimRight(l, "\n")
		if strings.TrimSpace(l) == "" || framing.MatchString(strings.TrimSpace(l)) {
			continue
		}
		lines = append(lines, strings.TrimSpace(logPrefix.ReplaceAllString(l, "")))
	}
	s := Skip{Package: pkg, Test: test, Reason: strings.Join(lines, " / "), Kind: Other}
	switch {
	case strings.Contains(s.Reason, testenv.AllowedPrefix):
		s.Kind = Allowed
	case strings.Contains(s.Reason, testenv.MissingPrefix):
		s.Kind = Missing
	case strings.HasPrefix(test, "Fuzz") && strings.Contains(test, "/"):
		s.Kind = FuzzInput
	}
	if s.Reason == "" {
		s.Reason = "(no reason given)"
	}
	return s
}

// Summary writes the skips, by kind, and the failed tests.
func (r *Report) Summary() {
	w := r.out
	skips := append([]Skip(nil), r.Skips...)
	sort.SliceStable(skips, func(i, j int) bool { return skips[i].Kind < skips[j].Kind })
	n := map[Kind]int{}
	for _, s := range skips {
		n[s.Kind]++
	}
	mode := "off"
	if r.Strict {
		mode = "on"
	}
	fmt.Fprintf(w, "\n== skip summary (strict mode %s): %d skipped: %d allowed, %d missing prerequisites, %d fuzz inputs, %d other\n",
		mode, len(skips), n[Allowed], n[Missing], n[FuzzInput], n[Other])
	last := Kind(-1)
	for _, s := range skips {
		if s.Kind == FuzzInput {
			continue // counted only: a fuzz target's choice about one input
		}
		if s.Kind != last {
			last = s.Kind
			fmt.Fprintf(w, "%s:\n", heading[s.Kind])
		}
		fmt.Fprintf(w, "  %s %s: %s\n", s.Package, s.Test, s.Reason)
	}
	if len(r.Failed) > 0 {
		fmt.Fprintf(w, "== %d failed:\n", len(r.Failed))
		for _, f := range r.Failed {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
}

var heading = map[Kind]string{
	Allowed: "allowed (the allow-list in tests/testenv: the host lacks it)",
	Missing: "missing prerequisites (failures in strict mode: install them)",
	Other:   "other (not through testenv.Missing or testenv.SkipAllowed)",
}

// Err reports, in strict mode, skips of kind Other: a test that skipped
// for a reason neither missing nor on the allow-list.
func (r *Report) Err() error {
	if !r.Strict {
		return nil
	}
	var other []string
	for _, s := range r.Skips {
		if s.Kind == Other {
			other = append(other, s.Package+" "+s.Test)
		}
	}
	if len(other) == 0 {
		return nil
	}
	return fmt.Errorf("strict mode: %d tests skipped outside the allow-list (%s); gate them with testenv.Missing or testenv.SkipAllowed", len(other), strings.Join(other, ", "))
}
