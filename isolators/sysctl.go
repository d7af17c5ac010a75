package isolators

import (
	"fmt"
	"strings"
)

// namespacedSysctls are the sysctl prefixes that belong to a namespace a
// pod has of its own (IPC, UTS, network), so that setting them cannot
// change the host.
var namespacedSysctls = []struct {
	prefix string
	netns  bool
}{
	{"kernel.shmmax", false}, {"kernel.shmall", false}, {"kernel.shmmni", false},
	{"kernel.shm_rmid_forced", false}, {"kernel.msgmax", false}, {"kernel.msgmnb", false},
	{"kernel.msgmni", false}, {"kernel.sem", false}, {"fs.mqueue.", false},
	{"kernel.domainname", false}, {"kernel.hostname", false},
	{"net.", true},
}

// CheckSysctl refuses a sysctl that is not namespaced, or a net.* one for
// a pod that shares the host's network namespace.
func CheckSysctl(key string, hostNetwork bool) error {
	if key == "" || strings.ContainsAny(key, "/ ") || strings.Contains(key, "..") {
		return fmt.Errorf("--sysctl %q: not a sysctl name", key)
	}
	for _, n := range namespacedSysctls {
		if key == n.prefix || strings.HasPrefix(key, n.prefix) && (strings.HasSuffix(n.prefix, ".") || key[len(n.prefix)] == '.') {
			if n.netns && hostNetwork {
				return fmt.Errorf("--sysctl %s: a pod with --net=host shares the host's network settings; give it a network of its own", key)
			}
			return nil
		}
	}
	return fmt.Errorf("--sysctl %s: not namespaced, it would change the host; allowed: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, kernel.domainname, net.* (with a pod network)", key)
}

// SysctlPath is the /proc/sys file of a checked sysctl name.
func SysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}
