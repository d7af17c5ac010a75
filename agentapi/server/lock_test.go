package server

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage0"
)

// TestOneAgentPerDirectory: a second agent on the same data or state
// directory is refused while the first runs, and starts once it closed.
func TestOneAgentPerDirectory(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	rt, err := stage0.New(data, filepath.Join(data, "etc"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(data, state string) Config { return Config{Runtime: rt, DataDir: data, StateDir: state} }
	first, err := New(ctx, cfg(data, filepath.Join(data, "agent")))
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	for _, tt := range []struct{ data, state, names string }{
		{data, filepath.Join(data, "agent"), "data directory (--dir) " + data},
		{data, filepath.Join(other, "agent"), "data directory (--dir) " + data},
		{other, filepath.Join(data, "agent"), "state directory " + filepath.Join(data, "agent")},
	} {
		a, err := New(ctx, cfg(tt.data, tt.state))
		if err == nil {
			a.Close()
		}
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), tt.names+" is in use by another agent") {
			t.Errorf("a second agent on %s and %s: %v, want a refusal naming %s", tt.data, tt.state, err, tt.names)
		}
	}
	first.Close()
	again, err := New(ctx, cfg(data, filepath.Join(data, "agent")))
	if err != nil {
		t.Fatalf("after the first agent closed: %v", err)
	}
	again.Close()
}
