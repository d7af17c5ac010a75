package isolators

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// capabilities maps capability names (without CAP_) to their numbers.
var capabilities = map[string]uintptr{
	"AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "AUDIT_READ": unix.CAP_AUDIT_READ, "AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "BPF": unix.CAP_BPF, "CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
	"CHOWN": unix.CAP_CHOWN, "DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"FOWNER": unix.CAP_FOWNER, "FSETID": unix.CAP_FSETID, "IPC_LOCK": unix.CAP_IPC_LOCK, "IPC_OWNER": unix.CAP_IPC_OWNER,
	"KILL": unix.CAP_KILL, "LEASE": unix.CAP_LEASE, "LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE,
	"MAC_ADMIN": unix.CAP_MAC_ADMIN, "MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE, "MKNOD": unix.CAP_MKNOD,
	"NET_ADMIN": unix.CAP_NET_ADMIN, "NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "NET_BROADCAST": unix.CAP_NET_BROADCAST,
	"NET_RAW": unix.CAP_NET_RAW, "PERFMON": unix.CAP_PERFMON, "SETFCAP": unix.CAP_SETFCAP, "SETGID": unix.CAP_SETGID,
	"SETPCAP": unix.CAP_SETPCAP, "SETUID": unix.CAP_SETUID, "SYSLOG": unix.CAP_SYSLOG, "SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"SYS_BOOT": unix.CAP_SYS_BOOT, "SYS_CHROOT": unix.CAP_SYS_CHROOT, "SYS_MODULE": unix.CAP_SYS_MODULE,
	"SYS_NICE": unix.CAP_SYS_NICE, "SYS_PACCT": unix.CAP_SYS_PACCT, "SYS_PTRACE": unix.CAP_SYS_PTRACE,
	"SYS_RAWIO": unix.CAP_SYS_RAWIO, "SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "SYS_TIME": unix.CAP_SYS_TIME,
	"SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG, "WAKE_ALARM": unix.CAP_WAKE_ALARM,
}

// DefaultCaps is the classic container capability set: what an app
// running as root holds unless told otherwise.
var DefaultCaps = []string{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
	"NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

// AllCaps lists every capability karman knows, sorted.
func AllCaps() []string {
	out := make([]string, 0, len(capabilities))
	for n := range capabilities {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// normCap turns "cap_net_admin", "CAP_NET_ADMIN" or "net_admin" into
// "NET_ADMIN", refusing unknown names.
func normCap(s string) (string, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_")
	if _, ok := capabilities[n]; !ok {
		return "", fmt.Errorf("unknown capability %q (known: CAP_%s)", s, strings.Join(AllCaps(), ", CAP_"))
	}
	return n, nil
}

// HostNetDropped are the capabilities that DefaultCaps loses in a pod on
// the host's network: CAP_NET_RAW there opens raw and packet sockets on
// the host's interfaces (sniffing, spoofing the host's traffic). An app
// that needs it names it in its retain list.
var HostNetDropped = []string{"NET_RAW"}

// AppCaps computes an app's capability set: retain, when given, is the
// whole set; otherwise DefaultCaps, less HostNetDropped when hostNet,
// without remove. Names are checked.
func AppCaps(retain, remove []string, hostNet bool) ([]string, error) {
	if len(retain) > 0 && len(remove) > 0 {
		return nil, fmt.Errorf("--caps-retain and --caps-remove exclude each other: retain lists the whole set")
	}
	if len(retain) > 0 {
		out := make([]string, 0, len(retain))
		for _, c := range retain {
			n, err := normCap(c)
			if err != nil {
				return nil, fmt.Errorf("--caps-retain: %w", err)
			}
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out, nil
	}
	out := slices.Clone(DefaultCaps)
	if hostNet {
		out = slices.DeleteFunc(out, func(k string) bool { return slices.Contains(HostNetDropped, k) })
	}
	for _, c := range remove {
		n, err := normCap(c)
		if err != nil {
			return nil, fmt.Errorf("--caps-remove: %w", err)
		}
		out = slices.DeleteFunc(out, func(k string) bool { return k == n })
	}
	return out, nil
}

// CapNumbers turns checked names into capability numbers.
func CapNumbers(names []string) ([]uintptr, error) {
	out := make([]uintptr, 0, len(names))
	for _, s := range names {
		n, err := normCap(s)
		if err != nil {
			return nil, err
		}
		out = append(out, capabilities[n])
	}
	return out, nil
}
