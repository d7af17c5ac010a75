package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// CNI networks: a conflist (spec 0.3 to 1.1) named NAME in
// <config-dir>/net.d, executed by libcni with the plugins of
// Config.CNIPluginDirs. What DEL needs later (the conflist as it was, the
// plugin directories, the arguments) is recorded in the pod's record before
// ADD runs; libcni's own cache of each result lives in PODDIR/net/cni.

// cniRec is what a CNI attachment records.
type cniRec struct {
	Conflist   json.RawMessage `json:"conflist"`
	File       string          `json:"file"`
	PluginDirs []string        `json:"pluginDirs"`
	Args       [][2]string     `json:"args,omitempty"`
	CapArgs    map[string]any  `json:"capabilityArgs,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
}

// cniCacheDir is libcni's cache (results, configs) inside the pod's
// directory.
const cniCacheDir = "net/cni"

// Names lists the networks a pod may join on this host: none, host and
// default, then the names of the valid conflists in configDir/net.d, sorted.
func Names(configDir string) []string {
	names := []string{None, Host, Default}
	files, _ := libcni.ConfFiles(filepath.Join(configDir, CNIConfDir), []string{".conflist"})
	var cni []string
	for _, f := range files {
		if l, err := libcni.ConfListFromFile(f); err == nil && !slices.Contains(names, l.Name) && !slices.Contains(cni, l.Name) {
			cni = append(cni, l.Name)
		}
	}
	sort.Strings(cni)
	return append(names, cni...)
}

// loadConflist finds the conflist named name in dir. A file that does not
// parse is reported when no valid file has the name: it is then probably
// the one meant.
func loadConflist(dir, name string) (*libcni.NetworkConfigList, string, error) {
	files, err := libcni.ConfFiles(dir, []string{".conflist"})
	if err != nil {
		return nil, "", fmt.Errorf("CNI configurations in %s: %w", dir, err)
	}
	sort.Strings(files)
	var broken []error
	for _, f := range files {
		l, err := libcni.ConfListFromFile(f)
		if err != nil {
			broken = append(broken, fmt.Errorf("%s: %v", f, err))
			continue
		}
		if l.Name == name {
			return l, f, nil
		}
	}
	if len(broken) > 0 {
		return nil, "", fmt.Errorf("no valid conflist in %s names network %q, and these do not parse (fix them): %w: %w", dir, name, errors.Join(broken...), ErrConfig)
	}
	return nil, "", fmt.Errorf("no conflist in %s names network %q (the built-in networks are default, none and host): %w", dir, name, ErrConfig)
}

// findPlugins checks that every plugin of l is in one of dirs.
func findPlugins(l *libcni.NetworkConfigList, file string, dirs []string) error {
	var errs []error
	for _, p := range l.Plugins {
		t := p.Network.Type
		if t == "" || t == "." || t == ".." || strings.ContainsRune(t, '/') {
			errs = append(errs, fmt.Errorf("CNI plugin type %q of network %s (%s) is not a plugin name: name a file in one of %s: %w",
				t, l.Name, file, strings.Join(dirs, ", "), ErrConfig))
			continue
		}
		found := false
		for _, d := range dirs {
			if fi, err := os.Stat(filepath.Join(d, t)); err == nil && fi.Mode().IsRegular() {
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("CNI plugin %q of network %s (%s) is in none of %s; install it (Debian: containernetworking-plugins) or list its directory in cniPluginDirs of %s: %w",
				t, l.Name, file, strings.Join(dirs, ", "), ConfigFile, ErrConfig))
		}
	}
	return errors.Join(errs...)
}

// prepareCNI loads and checks a CNI attachment before anything is made.
func prepareCNI(cfg *Config, a Attachment, ports []PortMapping) (*netRec, error) {
	l, file, err := loadConflist(filepath.Join(cfg.dir, CNIConfDir), a.Name)
	if err != nil {
		return nil, err
	}
	if err := findPlugins(l, file, cfg.CNIPluginDirs); err != nil {
		return nil, err
	}
	c := &cniRec{Conflist: l.Bytes, File: file, PluginDirs: cfg.CNIPluginDirs, CapArgs: map[string]any{}}
	if len(a.Args) > 0 {
		c.Args = append([][2]string{{"IgnoreUnknown", "1"}}, a.Args...)
		for _, kv := range a.Args {
			if kv[0] == "IP" {
				c.CapArgs["ips"] = []string{kv[1]}
			}
		}
	}
	if len(ports) > 0 {
		pm := make([]map[string]any, len(ports))
		for i, p := range ports {
			pm[i] = map[string]any{"hostPort": p.HostPort, "containerPort": p.PodPort, "protocol": p.Protocol}
		}
		c.CapArgs["portMappings"] = pm
	}
	return &netRec{Status: Status{Name: a.Name}, Type: "cni", CNI: c, Ports: ports}, nil
}

func (c *cniRec) runtime(uuid, netns, ifName string) (*libcni.NetworkConfigList, *libcni.RuntimeConf, error) {
	l, err := libcni.ConfListFromBytes(c.Conflist)
	if err != nil {
		return nil, nil, fmt.Errorf("recorded conflist: %w", err)
	}
	return l, &libcni.RuntimeConf{ContainerID: uuid, NetNS: netns, IfName: ifName, Args: c.Args, CapabilityArgs: c.CapArgs}, nil
}

// addCNI runs ADD for an attachment prepared by prepareCNI.
func addCNI(ctx context.Context, rec *Record, n *netRec, podDir string) error {
	l, rt, err := n.CNI.runtime(rec.UUID, rec.NetNS, n.Interface)
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir(n.CNI.PluginDirs, filepath.Join(podDir, cniCacheDir), nil)
	res, err := cni.AddNetworkList(ctx, l, rt)
	if err != nil {
		return fmt.Errorf("CNI ADD (%s): %w", n.CNI.File, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("CNI result: %w", err)
	}
	if n.CNI.Result, err = json.Marshal(r); err != nil {
		return err
	}
	for _, ip := range r.IPs {
		if ip.Interface != nil && *ip.Interface < len(r.Interfaces) && r.Interfaces[*ip.Interface].Sandbox == "" {
			continue // an address of a host-side interface
		}
		n.Addresses = append(n.Addresses, ip.Address.String())
		if n.Gateway == "" && ip.Gateway != nil {
			n.Gateway = ip.Gateway.String()
		}
	}
	n.Nameservers, n.Search = r.DNS.Nameservers, r.DNS.Search
	return rec.save(podDir)
}

// teardownCNI runs DEL with what ADD was given. A namespace that is gone
// already is passed all the same: plugins must release what they hold
// regardless (CNI spec).
func teardownCNI(ctx context.Context, rec *Record, n *netRec, podDir string) error {
	if n.CNI == nil {
		return nil
	}
	l, rt, err := n.CNI.runtime(rec.UUID, rec.NetNS, n.Interface)
	if err != nil {
		return err
	}
	if _, err := os.Stat(rec.NetNS); err != nil {
		rt.NetNS = ""
	}
	cni := libcni.NewCNIConfigWithCacheDir(n.CNI.PluginDirs, filepath.Join(podDir, cniCacheDir), nil)
	if err := cni.DelNetworkList(ctx, l, rt); err != nil {
		return fmt.Errorf("CNI DEL of network %s: %w", n.Name, err)
	}
	return nil
}
