package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/isolators/cgroups"
)

// Thresholds of the node conditions.
const (
	memoryPressureFraction = 0.05      // MemAvailable below 5% of MemTotal
	diskPressureFraction   = 0.05      // free space of the state directory below 5%
	diskPressureMinFree    = 1 << 30   // or below 1 GiB
	pidPressureFraction    = 0.90      // PIDs in use (threads) above 90% of pid_max
	defaultPortFrom        = 20000     // the dynamic port range a master may hand out
	defaultPortTo          = 32000     //
	minReservedMemory      = 256 << 20 // default system reservation
)

// readBootID returns the kernel's boot id, which changes at each boot.
func readBootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// nodeID returns the node id kept in path, creating a random one.
func nodeID(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	var r [16]byte
	rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	if err := writeAtomic(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// meminfo reads /proc/meminfo fields in bytes.
func meminfo() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		if len(fs) > 1 && fs[1] == "kB" {
			n <<= 10
		}
		out[k] = n
	}
	return out
}

// cpuMHz is the highest "cpu MHz" of /proc/cpuinfo (0 when unknown).
func cpuMHz() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	best := 0.0
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f > best {
				best = f
			}
		}
	}
	return int(best)
}

// osName is PRETTY_NAME of /etc/os-release.
func osName() string {
	b, _ := os.ReadFile("/etc/os-release")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return runtime.GOOS
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// diskOf returns the total and available bytes of the file system of dir.
func diskOf(dir string) (total, free int64) {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0, 0
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize
}

// fingerprint is the static part of the node document.
func fingerprint(id, dir, version string, reserve agentapi.Resources, ports agentapi.PortRange) (agentapi.Identity, agentapi.Resources, agentapi.Resources) {
	host, _ := os.Hostname()
	ident := agentapi.Identity{
		ID: id, Hostname: host, BootID: readBootID(), OS: osName(), Kernel: kernelRelease(),
		Arch: runtime.GOARCH, CgroupMode: cgroups.Mode(), RuntimeVersion: version,
	}
	disk, _ := diskOf(dir)
	capa := agentapi.Resources{
		CPUCores: runtime.NumCPU(), CPUMHz: cpuMHz(), MemoryBytes: meminfo()["MemTotal"], DiskBytes: disk,
		Ports: []agentapi.PortRange{ports},
	}
	capa.CPUMillis = int64(capa.CPUCores) * 1000
	if reserve.MemoryBytes < 0 {
		reserve.MemoryBytes = min(minReservedMemory, capa.MemoryBytes/10)
	}
	return ident, capa, reserve
}

// allocatable is capacity minus reservations, floored at zero.
func allocatable(capa, res agentapi.Resources) agentapi.Resources {
	return agentapi.Resources{
		CPUMillis:   max(0, capa.CPUMillis-res.CPUMillis),
		MemoryBytes: max(0, capa.MemoryBytes-res.MemoryBytes),
		DiskBytes:   max(0, capa.DiskBytes-res.DiskBytes),
	}
}

// hostSample is what sampling the host reads.
type hostSample struct {
	memTotal, memAvailable int64
	diskTotal, diskFree    int64
	load1                  float64
	// procs counts processes; pids counts the PIDs in use, one per
	// thread, which is what pid_max bounds.
	procs, pids, pidMax int64
}

func sampleHost(dir string) hostSample {
	mi := meminfo()
	s := hostSample{memTotal: mi["MemTotal"], memAvailable: mi["MemAvailable"]}
	s.diskTotal, s.diskFree = diskOf(dir)
	// /proc/loadavg: "0.10 0.20 0.30 RUNNING/TOTAL LASTPID"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fs := strings.Fields(string(b))
		if len(fs) >= 4 {
			s.load1, _ = strconv.ParseFloat(fs[0], 64)
			if _, total, ok := strings.Cut(fs[3], "/"); ok {
				s.pids, _ = strconv.ParseInt(total, 10, 64) // threads, not processes
			}
		}
	}
	s.procs = countProcesses("/proc")
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		s.pidMax, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	return s
}

// countProcesses counts the processes of the proc file system at proc:
// its numeric entries, one per thread group (threads are listed only
// under each process's task/). 0 when it cannot be read.
func countProcesses(proc string) int64 {
	f, err := os.Open(proc)
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	var n int64
	for _, name := range names {
		if name != "" && strings.Trim(name, "0123456789") == "" {
			n++
		}
	}
	return n
}

// conditions derives the node conditions from a sample, keeping the
// transition times of those that did not change.
func conditions(s hostSample, prev []agentapi.Condition, now time.Time) []agentapi.Condition {
	mk := func(typ string, status bool, reason, msg string) agentapi.Condition {
		c := agentapi.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransition: now}
		for _, p := range prev {
			if p.Type == typ && p.Status == status {
				c.LastTransition = p.LastTransition
			}
		}
		return c
	}
	memP := s.memTotal > 0 && float64(s.memAvailable) < memoryPressureFraction*float64(s.memTotal)
	diskP := s.diskTotal > 0 && (float64(s.diskFree) < diskPressureFraction*float64(s.diskTotal) || s.diskFree < diskPressureMinFree)
	pidP := s.pidMax > 0 && float64(s.pids) > pidPressureFraction*float64(s.pidMax)
	out := []agentapi.Condition{
		mk("MemoryPressure", memP, pick(memP, "LowMemory", "SufficientMemory"),
			fmt.Sprintf("%d MiB available of %d MiB", s.memAvailable>>20, s.memTotal>>20)),
		mk("DiskPressure", diskP, pick(diskP, "LowDisk", "SufficientDisk"),
			fmt.Sprintf("%d MiB free of %d MiB in the state directory's file system", s.diskFree>>20, s.diskTotal>>20)),
		mk("PIDPressure", pidP, pick(pidP, "TooManyProcesses", "SufficientPIDs"),
			fmt.Sprintf("%d PIDs in use (%d processes and their threads), pid_max %d", s.pids, s.procs, s.pidMax)),
	}
	ready := !memP && !diskP && !pidP
	msg := "the agent runs and the node has no pressure"
	if !ready {
		msg = "the node is under pressure (see the other conditions)"
	}
	return append([]agentapi.Condition{mk("Ready", ready, pick(ready, "AgentReady", "NodePressure"), msg)}, out...)
}

func pick(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
