package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// nginxMaster is what nginx's master process shows as its command line.
const nginxMaster = "nginx: master process nginx -g daemon off;"

func main() {
	name := filepath.Base(os.Args[0])
	if strings.HasPrefix(os.Args[0], "nginx: ") {
		name = "nginx"
	}
	var err error
	switch name {
	case "nginx":
		err = nginx()
	case "httpd-foreground", "httpd":
		err = httpd()
	case "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case "pause":
		pause()
	case "pgrep":
		os.Exit(pgrep(os.Args[1:]))
	case "ipcs":
		err = ipcs(os.Stdout)
	default:
		err = fmt.Errorf("started as %q: want nginx, httpd-foreground, nnp, pause, pgrep or ipcs", name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// nginx re-executes itself (same PID) under nginx's master command line,
// then writes the PID file and serves.
func nginx() error {
	if os.Args[0] != nginxMaster {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		// Executed by its path, not /proc/self/exe, so that comm stays
		// "nginx".
		return syscall.Exec(exe, []string{nginxMaster}, os.Environ())
	}
	port, err := nginxPort("/etc/nginx/conf.d/default.conf")
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	if err := os.MkdirAll("/var/run", 0o755); err != nil {
		return err
	}
	if err := os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return serve(l, "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n")
}

var listenLine = regexp.MustCompile(`^\s*listen\s+(\d+)\s*;`)

// nginxPort reads the first "listen N;" of an nginx server block; 80
// when the file does not exist.
func nginxPort(conf string) (int, error) {
	f, err := os.Open(conf)
	if errors.Is(err, os.ErrNotExist) {
		return 80, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := listenLine.FindStringSubmatch(s.Text()); m != nil {
			return strconv.Atoi(m[1])
		}
	}
	return 80, s.Err()
}

func httpd() error {
	l, err := net.Listen("tcp", ":80")
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "httpd: listening on %s\n", l.Addr())
	return serve(l, "<html><body><h1>It works!</h1></body></html>\n")
}

// serve answers every request with page until SIGTERM or SIGINT, then
// exits 0 as the real servers do.
func serve(l net.Listener, page string) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	go func() { <-sig; os.Exit(0) }()
	return http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, page)
	}))
}

func pause() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

// pgrep prints the PIDs (but its own) whose comm, or with -f whose
// command line, matches the pattern; 0 if one did, 1 if none, 2 on a
// usage error, as procps' pgrep.
func pgrep(args []string) int {
	full := false
	if len(args) > 0 && args[0] == "-f" {
		full, args = true, args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: pgrep [-f] PATTERN")
		return 2
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: %v\n", err)
		return 2
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: %v\n", err)
		return 3
	}
	found := 1
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var text string
		if full {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil {
				continue
			}
			text = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		} else {
			b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
			if err != nil {
				continue
			}
			text = strings.TrimSuffix(string(b), "\n")
		}
		if re.MatchString(text) {
			fmt.Println(pid)
			found = 0
		}
	}
	return found
}

// ipcs prints the shared memory segments of the IPC namespace.
func ipcs(w io.Writer) error {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n------ Shared Memory Segments --------\n%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n", "key", "shmid", "owner", "perms", "bytes", "nattch", "status")
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, line := range lines[1:] {
		// key shmid perms size cpid lpid nattch uid gid ...
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		key, _ := strconv.ParseInt(f[0], 10, 64)
		perms, _ := strconv.ParseInt(f[2], 10, 64)
		fmt.Fprintf(w, "0x%08x %-10s %-10s %-10o %-10s %-10s\n", uint32(key), f[1], f[7], perms&0o777, f[3], f[6])
	}
	fmt.Fprintln(w)
	return nil
}
