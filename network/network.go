package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/karman-project/karman/internal/atomicfile"
)

// Error classes.
var (
	// ErrConfig: a network configuration is missing or broken.
	ErrConfig = errors.New("invalid network configuration")
	// ErrExhausted: a network has no free address left.
	ErrExhausted = errors.New("no free address")
	// ErrPortTaken: a host port asked for is already in use.
	ErrPortTaken = errors.New("host port taken")
	// ErrRecordDamaged: a pod's network record cannot be read (garbage,
	// truncated, another version); TeardownByUUID undoes the network
	// without it.
	ErrRecordDamaged = errors.New("network record damaged")
)

// Names of the built-in networks.
const (
	None    = "none"
	Host    = "host"
	Default = "default"
)

// Attachment is one network a pod joins, as the user named it:
// --net=NAME[:K=V;K=V].
type Attachment struct {
	Name string
	// Args are passed to CNI plugins as CNI_ARGS. IP=ADDR also asks the
	// plugins for that address (the ips capability).
	Args [][2]string
}

// ParseNet parses the value of --net: none, host, or a comma-separated list
// of networks, each NAME[:K=V;K=V].
func ParseNet(s string) ([]Attachment, error) {
	if s == "" {
		s = Default
	}
	var out []Attachment
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		name, args, _ := strings.Cut(part, ":")
		a := Attachment{Name: name}
		if !validNetName(name) {
			return nil, fmt.Errorf("--net=%s: %q is not a network name (letters, digits, '-', '_', '.')", s, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("--net=%s: network %s given twice", s, name)
		}
		seen[name] = true
		if args != "" {
			for _, kv := range strings.Split(args, ";") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("--net=%s: CNI argument %q: use K=V", s, kv)
				}
				a.Args = append(a.Args, [2]string{k, v})
			}
		}
		out = append(out, a)
	}
	if len(out) > 1 {
		for _, a := range out {
			if a.Name == None || a.Name == Host {
				return nil, fmt.Errorf("--net=%s: %s cannot be combined with other networks", s, a.Name)
			}
		}
	}
	if (out[0].Name == None || out[0].Name == Host) && len(out[0].Args) > 0 {
		return nil, fmt.Errorf("--net=%s takes no arguments", out[0].Name)
	}
	return out, nil
}

func validNetName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Options say which networks a pod joins.
type Options struct {
	UUID     string
	PodDir   string
	Networks []Attachment
	Ports    []PortMapping
	// ConfigDir holds network.json and the CNI configurations (net.d).
	ConfigDir string
	Log       *slog.Logger
}

// Status is one network of a pod, for list and status.
type Status struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface,omitempty"`
	Addresses []string `json:"addresses,omitempty"` // CIDR notation
	Gateway   string   `json:"gateway,omitempty"`
	// DNS servers and search domains a CNI plugin returned.
	Nameservers []string `json:"nameservers,omitempty"`
	Search      []string `json:"search,omitempty"`
}

// Record is what a pod's network is, kept in PODDIR/net/record.json. Every
// resource is recorded here before it is created, so that Teardown can
// always undo it, whoever calls it and however the pod ended.
type Record struct {
	Version int    `json:"version"`
	UUID    string `json:"uuid"`
	// NetNS is the persistent network namespace (a bind mount of nsfs).
	NetNS    string    `json:"netns"`
	Networks []*netRec `json:"networks"`
	// Down is set once Teardown has undone everything.
	Down bool `json:"down,omitempty"`
}

// netRec is one attachment of a pod.
type netRec struct {
	Status
	Type string `json:"type"` // "default" or "cni"
	// The default network.
	Bridge   string        `json:"bridge,omitempty"`
	IPAMDir  string        `json:"ipamDir,omitempty"`
	HostVeth string        `json:"hostVeth,omitempty"`
	Table    string        `json:"table,omitempty"`
	Ports    []PortMapping `json:"ports,omitempty"`
	// CNI networks.
	CNI *cniRec `json:"cni,omitempty"`
	// Started is set before the attachment is made: teardown undoes only
	// what was started.
	Started bool `json:"started,omitempty"`
}

// RecordDir is the pod directory's network directory; RecordFile the
// record in it.
const (
	RecordDir  = "net"
	RecordFile = "net/record.json"
)

const recordVersion = 1

// Load reads a pod's network record; a pod without networks has none
// (fs.ErrNotExist).
func Load(podDir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(podDir, RecordFile))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("network record of %s: %w: %w", podDir, ErrRecordDamaged, err)
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("network record of %s has version %d, this karman reads %d: %w", podDir, r.Version, recordVersion, ErrRecordDamaged)
	}
	return &r, nil
}

// Statuses returns what list and status show of a pod's networks.
func (r *Record) Statuses() []Status {
	out := make([]Status, 0, len(r.Networks))
	for _, n := range r.Networks {
		out = append(out, n.Status)
	}
	return out
}

func (r *Record) save(podDir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	// Durable with a CNI network: the record is then how Teardown finds
	// what outlives a reboot (CNI plugins' state on disk, such as
	// host-local's reservations). What the default network makes (kernel
	// objects, reservations under /run) does not outlive one, and its pods'
	// starts are spared the fsyncs.
	write := atomicfile.WriteFileNoSync
	if slices.ContainsFunc(r.Networks, func(n *netRec) bool { return n.Type == "cni" }) {
		write = atomicfile.WriteFile
	}
	if err := write(filepath.Join(podDir, RecordFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("network record: %w", err)
	}
	return nil
}

// Setup creates the pod's network namespace and attaches it to every
// network of o; it returns the record (NetNS, addresses). Everything that
// can be checked is checked before anything is made (configurations,
// plugins, host ports); on a later failure Setup undoes what it did.
func Setup(ctx context.Context, o Options) (_ *Record, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	cfg, rec, err := plan(o)
	if err != nil {
		return nil, err
	}
	if err := checkPorts(o.Ports); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.PodDir, RecordDir), 0o755); err != nil {
		return nil, err
	}
	if err := rec.save(o.PodDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if terr := Teardown(context.WithoutCancel(ctx), o.PodDir, o.Log); terr != nil {
				o.Log.Warn("undoing a failed network setup", "pod", o.UUID, "err", terr)
				err = fmt.Errorf("%w (and undoing it: %v; `karman gc` retries)", err, terr)
			}
		}
	}()
	if err := createNetNS(rec.NetNS); err != nil {
		return rec, err
	}
	o.Log.Debug("network namespace made", "elapsed", time.Since(start))
	for _, n := range rec.Networks {
		if !n.Started {
			n.Started = true
			if err := rec.save(o.PodDir); err != nil {
				return rec, err
			}
		}
		if n.Type == Default {
			err = attachDefault(ctx, &cfg.Default, rec, n, o.PodDir)
		} else {
			err = addCNI(ctx, rec, n, o.PodDir)
		}
		if err != nil {
			return rec, fmt.Errorf("network %s: %w", n.Name, err)
		}
		o.Log.Debug("network attached", "network", n.Name, "elapsed", time.Since(start))
	}
	return rec, nil
}

// Check checks what Setup would check first (configurations, plugins,
// host ports) and makes nothing: stage0 calls it before it prepares a pod.
func Check(o Options) error {
	if _, _, err := plan(o); err != nil {
		return err
	}
	return checkPorts(o.Ports)
}

// plan loads the configuration and the record of the attachments to make.
func plan(o Options) (*Config, *Record, error) {
	cfg, err := LoadConfig(o.ConfigDir)
	if err != nil {
		return nil, nil, err
	}
	rec := &Record{Version: recordVersion, UUID: o.UUID, NetNS: filepath.Join(cfg.NetNSDir, o.UUID)}
	var errs []error
	for i, a := range o.Networks {
		var ports []PortMapping
		if i == 0 { // ports go to the first network
			ports = o.Ports
		}
		var n *netRec
		if a.Name == Default {
			if len(a.Args) > 0 {
				errs = append(errs, fmt.Errorf("--net=default takes no arguments"))
				continue
			}
			n = cfg.Default.rec(cfg.StateDir, o.UUID, ports)
			// Undoing a default attachment that was never made costs
			// nothing (release by UUID, no rule, no link): it counts as
			// started from the first record on, which spares a write.
			n.Started = true
		} else if n, err = prepareCNI(cfg, a, ports); err != nil {
			errs = append(errs, fmt.Errorf("--net=%s: %w", a.Name, err))
			continue
		}
		n.Interface = fmt.Sprintf("eth%d", i)
		rec.Networks = append(rec.Networks, n)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return cfg, rec, nil
}

// Teardown undoes a pod's networks: CNI DEL, the veth, the address
// reservation, port forwards, then the network namespace. It is idempotent
// and does nothing for a pod without a network record; two Teardowns of
// one pod may race (what one undid is done for the other). Whatever fails
// is reported, and the rest is still undone; the record stays until
// everything is. A record that cannot be read fails with ErrRecordDamaged:
// TeardownByUUID is then the way.
func Teardown(ctx context.Context, podDir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rec, err := Load(podDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Down {
		return nil
	}
	var errs []error
	for i := len(rec.Networks) - 1; i >= 0; i-- {
		n := rec.Networks[i]
		if !n.Started {
			continue
		}
		switch n.Type {
		case Default:
			errs = append(errs, teardownDefault(rec, n))
		case "cni":
			errs = append(errs, teardownCNI(ctx, rec, n, podDir))
		}
	}
	if rec.NetNS != "" {
		if err := removeNetNS(rec.NetNS); err != nil {
			errs = append(errs, err)
			// The namespace stays: at least take the pod off the bridge.
			for _, n := range rec.Networks {
				if n.Type == Default && n.Started {
					errs = append(errs, deleteLink(n.HostVeth))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network teardown of pod %s: %w", rec.UUID, err)
	}
	rec.Down = true
	log.Debug("network torn down", "pod", rec.UUID)
	return rec.save(podDir)
}
