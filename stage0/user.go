package stage0

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lookupFile finds rel in a stack of extracted layers (bottom first) as
// overlayfs would show it: the top-most layer that has it, unless a
// whiteout above hides it.
func lookupFile(layers []string, rel string) (string, bool) {
	for i := len(layers) - 1; i >= 0; i-- {
		p := filepath.Join(layers[i], rel)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.Mode()&fs.ModeCharDevice != 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
				return "", false // whited out
			}
		}
		return p, fi.Mode().IsRegular()
	}
	return "", false
}

// resolveUser turns "name", "uid", "name:group" or "uid:gid" into ids,
// reading /etc/passwd and /etc/group of the image. An empty spec is root.
func resolveUser(layers []string, rootDir, spec string) (uid, gid uint32, gids []uint32, err error) {
	if spec == "" {
		return 0, 0, nil, nil
	}
	read := func(rel string) [][]string {
		p, ok := "", false
		if rootDir != "" {
			p = filepath.Join(rootDir, rel)
			_, err := os.Stat(p)
			ok = err == nil
		} else {
			p, ok = lookupFile(layers, rel)
		}
		if !ok {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		var rows [][]string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
				rows = append(rows, strings.Split(line, ":"))
			}
		}
		return rows
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	passwd := read("etc/passwd")
	found := false
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		uid, found = uint32(n), true
		for _, row := range passwd {
			if len(row) > 3 && row[2] == userPart {
				if g, err := strconv.ParseUint(row[3], 10, 32); err == nil {
					gid = uint32(g)
				}
			}
		}
	} else {
		for _, row := range passwd {
			if len(row) > 3 && row[0] == userPart {
				u, err1 := strconv.ParseUint(row[2], 10, 32)
				g, err2 := strconv.ParseUint(row[3], 10, 32)
				if err1 == nil && err2 == nil {
					uid, gid, found = uint32(u), uint32(g), true
				}
			}
		}
	}
	if !found {
		return 0, 0, nil, fmt.Errorf("--user %q: no such user in the image's /etc/passwd; give a uid instead", spec)
	}
	groups := read("etc/group")
	if hasGroup {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			gid = uint32(n)
		} else {
			ok := false
			for _, row := range groups {
				if len(row) > 2 && row[0] == groupPart {
					if g, err := strconv.ParseUint(row[2], 10, 32); err == nil {
						gid, ok = uint32(g), true
					}
				}
			}
			if !ok {
				return 0, 0, nil, errors.New("--user " + spec + ": no such group in the image's /etc/group; give a gid instead")
			}
		}
	}
	// (uint32)-1 is no one's id: setuid(2) and setgid(2) read it as "no
	// change", which would leave the app root. An image's config or
	// /etc/passwd may say it as well as a flag.
	if uid > maxID || gid > maxID {
		return 0, 0, nil, fmt.Errorf("user %q: resolves to uid %d, gid %d; ids are 0 to %d", spec, uid, gid, maxID)
	}
	// Supplementary groups: those that list the user by name.
	name := userPart
	for _, row := range passwd {
		if len(row) > 2 && row[2] == userPart {
			name = row[0]
		}
	}
	for _, row := range groups {
		if len(row) < 4 {
			continue
		}
		for _, m := range strings.Split(row[3], ",") {
			if m == name {
				if g, err := strconv.ParseUint(row[2], 10, 32); err == nil && g <= maxID && uint32(g) != gid {
					gids = append(gids, uint32(g))
				}
			}
		}
	}
	return uid, gid, gids, nil
}
