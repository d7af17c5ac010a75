package registries

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// sep joins the parts of a key path: a byte no TOML key part can hold
// unquoted, so quoted keys with dots do not collide.
const sep = "\x00"

// key is the path of a value: its keys and array indexes, from the top.
func key(parts ...any) string {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, sep)
}

func child(at, k string) string {
	if at == "" {
		return k
	}
	return at + sep + k
}

// lineIndex maps the key path of each table header and key of a document
// to its line.
type lineIndex map[string]int

// of is the line of the value at path, or of the nearest table or key
// that holds it (an inline table has no line per key); 0 if none.
func (l lineIndex) of(path string) int {
	for {
		if n, ok := l[path]; ok {
			return n
		}
		i := strings.LastIndex(path, sep)
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// keyLines indexes the lines of a document that parses: [[a]] headers
// are a.0, a.1, ...; [[a.b]] is a.N.b.M under the last a.N; keys are
// under the table they are in.
func keyLines(data []byte) lineIndex {
	nl := []int{}
	for i, c := range data {
		if c == '\n' {
			nl = append(nl, i)
		}
	}
	lineOf := func(off uint32) int { return sort.SearchInts(nl, int(off)) + 1 }
	lines := lineIndex{}
	counts := map[string]int{} // an array of tables' path: its elements so far
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			it := e.Key()
			var parts []*unstable.Node
			for it.Next() {
				parts = append(parts, it.Node())
			}
			path := ""
			for i, k := range parts {
				path = child(path, string(k.Data))
				if _, ok := lines[path]; !ok && i < len(parts)-1 {
					lines[path] = lineOf(k.Raw.Offset)
				}
				if i == len(parts)-1 && e.Kind == unstable.ArrayTable {
					n := counts[path]
					counts[path] = n + 1
					path = child(path, fmt.Sprint(n))
				} else if n, ok := counts[path]; ok {
					path = child(path, fmt.Sprint(n-1))
				}
			}
			table = path
			if len(parts) > 0 {
				if _, ok := lines[path]; !ok {
					lines[path] = lineOf(parts[0].Raw.Offset)
				}
			}
		case unstable.KeyValue:
			it := e.Key()
			path := table
			for it.Next() {
				path = child(path, string(it.Node().Data))
			}
			lines[path] = lineOf(e.Raw.Offset)
		}
	}
	return lines
}
