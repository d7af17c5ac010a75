package stage0

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
)

// The checks of what a user names in a pod spec: the CLI's flags and the
// node agent's task fields go through the same ones (PodSpec.Validate
// calls them, the agent calls them on its API's fields).

// MaxNameLen is the longest pod name.
const MaxNameLen = 128

// CheckName refuses a pod name that is not 1 to MaxNameLen of
// [A-Za-z0-9._-] starting with a letter, a digit or '_'. A name goes
// into the pod's /etc/hosts and into `karman list`, where a space or a
// newline would make another entry or row.
func CheckName(name string) error {
	ok := name != "" && len(name) <= MaxNameLen && name[0] != '.' && name[0] != '-'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("name %q: use 1 to %d of letters, digits, '.', '_' and '-', not starting with '.' or '-'", name, MaxNameLen)
	}
	return nil
}

// maxHostnameLen is the kernel's limit on a host name (HOST_NAME_MAX).
const maxHostnameLen = 64

// CheckHostname refuses a host name that is not an RFC 1123 host name of
// at most 64 characters: labels of 1 to 63 of [A-Za-z0-9-], not starting
// or ending with '-', joined by dots.
func CheckHostname(h string) error {
	ok := h != "" && len(h) <= maxHostnameLen
	if ok {
		for _, l := range strings.Split(h, ".") {
			if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
				ok = false
				break
			}
			for i := 0; ok && i < len(l); i++ {
				c := l[i]
				ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
			}
		}
	}
	if !ok {
		return fmt.Errorf("hostname %q: use an RFC 1123 host name of at most %d characters: labels of letters, digits and '-' (not at either end) joined by '.'", h, maxHostnameLen)
	}
	return nil
}

// CheckEnv refuses an environment entry that is not NAME=VALUE with a
// valid name (CheckEnvVar).
func CheckEnv(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("environment entry %q: use NAME=VALUE", kv)
	}
	return CheckEnvVar(k, v)
}

// CheckEnvVar refuses an environment variable whose name is empty or
// holds '=' or NUL, or whose value holds NUL: execve could not pass it
// as given (a NUL ends the string, the first '=' ends the name).
func CheckEnvVar(name, value string) error {
	switch {
	case name == "":
		return fmt.Errorf("environment variable %q: the name is empty; use NAME=VALUE", name+"="+value)
	case strings.ContainsAny(name, "=\x00"):
		return fmt.Errorf("environment variable %q: a name holds neither '=' nor NUL", name)
	case strings.ContainsRune(value, 0):
		return fmt.Errorf("environment variable %s: its value holds a NUL byte, which would cut it short", name)
	}
	return nil
}

// maxID is the largest uid or gid: (uint32)-1 means "no change" to
// setuid and setgid and is no one's id.
const maxID = 1<<32 - 2

// CheckUser refuses a user spec that cannot name a user: name, uid,
// name:group or uid:gid, where ids are 0 to 4294967294 and names hold no
// ':', white space or control characters. Whether the name exists is for
// the image's /etc/passwd to say.
func CheckUser(spec string) error {
	user, group, hasGroup := strings.Cut(spec, ":")
	if err := checkID("user", user); err != nil {
		return fmt.Errorf("user %q: %w", spec, err)
	}
	if hasGroup {
		if err := checkID("group", group); err != nil {
			return fmt.Errorf("user %q: %w", spec, err)
		}
	}
	return nil
}

func checkID(kind, s string) error {
	if s == "" {
		return fmt.Errorf("the %s is empty; use NAME, UID, NAME:GROUP or UID:GID", kind)
	}
	if isDigits(s) {
		if n, err := strconv.ParseUint(s, 10, 64); err != nil || n > maxID {
			return fmt.Errorf("%s id %s is out of range: use 0 to %d", kind, s, maxID)
		}
		return nil
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f || c == ':' {
			return fmt.Errorf("a %s name holds no ':', spaces or control characters", kind)
		}
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// CheckStopTimeout refuses a grace period between SIGTERM and SIGKILL
// that is not positive.
func CheckStopTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s is not a positive duration: use one such as 10s (the time apps get between SIGTERM and SIGKILL)", d)
	}
	return nil
}

// CheckExec refuses a program to run that is empty or holds a NUL.
func CheckExec(prog string) error {
	if prog == "" || strings.ContainsRune(prog, 0) {
		return fmt.Errorf("program %q: give a path or a name to run (leave it out to run the image's entrypoint)", prog)
	}
	return nil
}

// ParseVolume reads a volume as the --volume flag takes it:
// SRC:DST[:ro|:rw]. Whether the paths are acceptable is the mount's to
// say (poddir.Mount.Check, in PodSpec.Validate).
func ParseVolume(s string) (poddir.Mount, error) {
	const syntax = "use SRC:DST or SRC:DST:OPTIONS, the options ro or rw, nonrecursive (with ro) and private, rslave or rshared, comma-separated"
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return poddir.Mount{}, fmt.Errorf("%q: %s", s, syntax)
	}
	m := poddir.Mount{Source: parts[0], Target: parts[1]}
	if len(parts) == 3 {
		var access, prop bool
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro", "rw":
				if access {
					return poddir.Mount{}, fmt.Errorf("%q: ro or rw, once; %s", s, syntax)
				}
				access, m.ReadOnly = true, o == "ro"
			case "nonrecursive":
				if m.NonRecursive {
					return poddir.Mount{}, fmt.Errorf("%q: nonrecursive once; %s", s, syntax)
				}
				m.NonRecursive = true
			case poddir.PropagationPrivate, poddir.PropagationSlave, poddir.PropagationShared:
				if prop {
					return poddir.Mount{}, fmt.Errorf("%q: one propagation; %s", s, syntax)
				}
				prop = true
				if o != poddir.PropagationPrivate {
					m.Propagation = o
				}
			default:
				return poddir.Mount{}, fmt.Errorf("%q: option %q: %s", s, o, syntax)
			}
		}
		if m.NonRecursive && !m.ReadOnly {
			return poddir.Mount{}, fmt.Errorf("%q: nonrecursive is for ro: the volume's own mount read-only, its submounts as they are; %s", s, syntax)
		}
	}
	return m, nil
}

// ParseDevice reads a --device value: HOSTPATH[:PATH][:PERMISSIONS],
// PERMISSIONS a subset of rwm.
func ParseDevice(s string) (DeviceSpec, error) {
	const syntax = "use HOSTPATH, HOSTPATH:PATH or HOSTPATH:PATH:PERMISSIONS, as in /dev/fuse:/dev/fuse:rw"
	parts := strings.Split(s, ":")
	d := DeviceSpec{HostPath: parts[0]}
	switch {
	case len(parts) > 3 || parts[0] == "":
		return DeviceSpec{}, fmt.Errorf("%q: %s", s, syntax)
	case len(parts) == 3:
		d.Path, d.Access = parts[1], parts[2]
	case len(parts) == 2 && strings.HasPrefix(parts[1], "/"):
		d.Path = parts[1]
	case len(parts) == 2:
		d.Access = parts[1]
	}
	if len(parts) > 1 && d.Path == "" && d.Access == "" {
		return DeviceSpec{}, fmt.Errorf("%q: %s", s, syntax)
	}
	if d.Access != "" {
		if err := poddir.CheckDeviceAccess(d.Access); err != nil {
			return DeviceSpec{}, fmt.Errorf("%q: %w", s, err)
		}
	}
	return d, nil
}

// CheckArgs refuses program arguments that hold a NUL byte, which execve
// cannot pass.
func CheckArgs(args []string) error {
	for i, a := range args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("argument %d %q holds a NUL byte, which execve cannot pass", i+1, a)
		}
	}
	return nil
}

// ReadUUIDFile reads the pod UUID from a file such as `run
// --uuid-file-save` writes. A file that holds anything else is refused
// without echoing it: it may be any file, secrets included.
func ReadUUIDFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	s := strings.TrimSpace(string(b))
	if !isUUID(s) {
		return "", fmt.Errorf("%s does not hold a pod UUID (its contents are not shown); give the file that `karman run --uuid-file-save` wrote, or the UUID itself", name)
	}
	return strings.ToLower(s), nil
}

// isUUID tells whether s is a UUID in its 8-4-4-4-12 hexadecimal form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
