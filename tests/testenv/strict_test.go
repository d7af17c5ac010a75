package testenv

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeTB records what a gate does to a test instead of stopping it.
type fakeTB struct {
	testing.TB // nil: any other method panics
	failed     string
	skipped    string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }
func (f *fakeTB) Skip(a ...any)                  { f.skipped = fmt.Sprint(a...) }
func (f *fakeTB) Skipf(format string, a ...any)  { f.skipped = fmt.Sprintf(format, a...) }
func (f *fakeTB) Fatal(a ...any)                 { f.failed = fmt.Sprint(a...) }
func (f *fakeTB) Errorf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }

func TestStrict(t *testing.T) {
	for _, tc := range []struct {
		strict, ci string // "-": unset
		want       bool
	}{
		{"-", "-", false},
		{"1", "-", true},
		{"true", "-", true},
		{"0", "-", false},
		{"-", "true", true},
		{"-", "1", true},
		{"-", "false", false},
		{"", "true", true}, // empty: as if unset
		{"0", "true", false},
		{"false", "true", false},
		{"1", "false", true},
	} {
		setOrUnset(t, StrictEnv, tc.strict)
		setOrUnset(t, "CI", tc.ci)
		if got := Strict(); got != tc.want {
			t.Errorf("%s=%q CI=%q: Strict() = %v, want %v", StrictEnv, tc.strict, tc.ci, got, tc.want)
		}
	}
}

func setOrUnset(t *testing.T, k, v string) {
	t.Helper()
	t.Setenv(k, v) // and restores the old value at the end of t
	if v == "-" {
		os.Unsetenv(k)
	}
}

func TestMissing(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprint("strict=", strict), func(t *testing.T) {
			setOrUnset(t, "CI", "-")
			setOrUnset(t, StrictEnv, map[bool]string{false: "0", true: "1"}[strict])
			var f fakeTB
			Missing(&f, "Debian's busybox-static", "apt-get install busybox-static")
			got, other := f.skipped, f.failed
			if strict {
				got, other = f.failed, f.skipped
			}
			if other != "" {
				t.Errorf("strict %v: also %q", strict, other)
			}
			want := MissingPrefix + "Debian's busybox-static; apt-get install busybox-static"
			if !strings.HasPrefix(got, want) {
				t.Errorf("strict %v: %q, want it to start with %q", strict, got, want)
			}
			if strict && !strings.Contains(got, StrictEnv) {
				t.Errorf("strict failure %q does not say why a skip became a failure", got)
			}
		})
	}
}

// TestSkipAllowed: an allow-listed skip skips in strict mode too.
func TestSkipAllowed(t *testing.T) {
	t.Setenv(StrictEnv, "1")
	var f fakeTB
	SkipAllowed(&f, CgroupLayout, "no cgroup2 hierarchy")
	if f.failed != "" || f.skipped != AllowedPrefix+string(CgroupLayout)+": no cgroup2 hierarchy" {
		t.Errorf("failed %q, skipped %q", f.failed, f.skipped)
	}
}

func TestRequireCommandAndFile(t *testing.T) {
	t.Setenv(StrictEnv, "1")
	var f fakeTB
	if p := RequireCommand(&f, "karman-no-such-command", "apt-get install nothing"); p != "" || !strings.Contains(f.failed, "the karman-no-such-command command; apt-get install nothing") {
		t.Errorf("RequireCommand: %q, failed %q", p, f.failed)
	}
	f = fakeTB{}
	if p := RequireCommand(&f, "sh", "x"); p == "" || f.failed != "" || f.skipped != "" {
		t.Errorf("RequireCommand sh: %q, %+v", p, f)
	}
	RequireFile(&f, "/", "x")
	if f.failed != "" || f.skipped != "" {
		t.Errorf("RequireFile /: %+v", f)
	}
	RequireFile(&f, "/karman-no-such-file", "make it")
	if !strings.Contains(f.failed, MissingPrefix+"/karman-no-such-file; make it") {
		t.Errorf("RequireFile: %+v", f)
	}
}

// TestNoBareSkips: no test of the module calls Skip, Skipf or SkipNow
// itself, but through Missing or SkipAllowed, so that strict mode sees
// every skip; a fuzz target may still set aside an input (a Skip inside
// the function given to f.Fuzz).
func TestNoBareSkips(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	var bare []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".")) || path == wd {
				return filepath.SkipDir // this package is the one allowed to skip
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		// Calls of a method named like testing.T's, outside the fuzz
		// functions (the arguments of a call of a method Fuzz).
		var fuzz []ast.Node
		var skips []*ast.CallExpr
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				switch sel.Sel.Name {
				case "Fuzz":
					for _, a := range call.Args {
						if fl, ok := a.(*ast.FuncLit); ok {
							fuzz = append(fuzz, fl)
						}
					}
				case "Skip", "Skipf", "SkipNow":
					skips = append(skips, call)
				}
			}
			return true
		})
		for _, call := range skips {
			if !slices.ContainsFunc(fuzz, func(fl ast.Node) bool { return fl.Pos() <= call.Pos() && call.End() <= fl.End() }) {
				rel, _ := filepath.Rel(root, path)
				bare = append(bare, fmt.Sprintf("%s:%d", rel, fset.Position(call.Pos()).Line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bare) > 0 {
		t.Errorf("tests skip by themselves, unseen by strict mode; use testenv.Missing (a prerequisite to install) or testenv.SkipAllowed (an allow-list entry) at:\n  %s", strings.Join(bare, "\n  "))
	}
}
