package podinit

import (
	"encoding/json"
	"testing"

	"github.com/karman-project/karman/stage1/poddir"
)

// TestEmptyCapsSurviveJSON: an app whose every capability was removed
// (--caps-remove of the whole default set) keeps an empty set through
// pod.json and the exec shim's spec; with omitempty it came back nil,
// which means the default set.
func TestEmptyCapsSurviveJSON(t *testing.T) {
	dir := t.TempDir()
	if err := poddir.Save(dir, &poddir.Pod{UUID: "u", Apps: []poddir.App{{Name: "none", Dir: "apps/none", Args: []string{"sh"}, Caps: []string{}}, {Name: "default", Dir: "apps/default", Args: []string{"sh"}}}}); err != nil {
		t.Fatal(err)
	}
	p, err := poddir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Apps[0].Caps; c == nil || len(c) != 0 {
		t.Errorf("empty set came back as %#v", c)
	}
	if c := p.Apps[1].Caps; c != nil {
		t.Errorf("default set came back as %#v", c)
	}
	b, _ := json.Marshal(shimSpec{Caps: []string{}})
	var s shimSpec
	if err := json.Unmarshal(b, &s); err != nil || s.Caps == nil {
		t.Errorf("shim spec: empty set came back as %#v (%s), %v", s.Caps, b, err)
	}
}
