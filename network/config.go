package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// ConfigFile is the network configuration in the configuration directory.
// It is optional: without it the defaults below apply.
const ConfigFile = "network.json"

// CNIConfDir is the directory of CNI network configurations (conflists) in
// the configuration directory.
const CNIConfDir = "net.d"

// Config is <config-dir>/network.json:
//
//	{
//	  "version": 1,
//	  "default": {"bridge": "karman0", "subnet": "10.222.0.0/16", "masquerade": true},
//	  "cniPluginDirs": ["/usr/lib/cni", "/opt/cni/bin"]
//	}
//
// Every field is optional. Unknown fields are an error.
type Config struct {
	Version int           `json:"version"`
	Default DefaultConfig `json:"default"`
	// CNIPluginDirs are searched for CNI plugins, in order.
	CNIPluginDirs []string `json:"cniPluginDirs,omitempty"`
	// NetNSDir holds the pods' network namespaces; StateDir the address
	// reservations and locks of the default network. Both belong on a
	// tmpfs: after a reboot no pod holds either.
	NetNSDir string `json:"netnsDir,omitempty"`
	StateDir string `json:"stateDir,omitempty"`

	dir string // where CNI configurations are read from
}

// DefaultConfig is the built-in default network.
type DefaultConfig struct {
	// Bridge is the host bridge the pods' veths join (at most 15 bytes).
	Bridge string `json:"bridge,omitempty"`
	// Subnet is the IPv4 subnet pods get addresses from; the bridge has
	// its first address and is the pods' gateway.
	Subnet string `json:"subnet,omitempty"`
	// Masquerade (default true) rewrites the source of traffic leaving
	// the subnet to the host's address.
	Masquerade *bool `json:"masquerade,omitempty"`
	MTU        int   `json:"mtu,omitempty"`

	prefix netip.Prefix
}

// Defaults.
const (
	DefaultBridge   = "karman0"
	DefaultSubnet   = "10.222.0.0/16"
	DefaultNetNSDir = "/run/karman/netns"
	DefaultStateDir = "/run/karman/net"
)

// DefaultPluginDirs are where CNI plugins are looked for: Debian's package
// and the upstream convention.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// LoadConfig reads dir/network.json (if any), checks it and fills in the
// defaults.
func LoadConfig(dir string) (*Config, error) {
	c := &Config{Version: 1}
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%s: %w", path, err)
	default:
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(c); err != nil {
			return nil, fmt.Errorf("%s: %v: %w", path, err, ErrConfig)
		}
	}
	c.dir = dir
	if err := c.fill(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) fill() error {
	var errs []error
	if c.Version != 1 {
		errs = append(errs, fmt.Errorf("version %d: this karman reads version 1", c.Version))
	}
	d := &c.Default
	if d.Bridge == "" {
		d.Bridge = DefaultBridge
	}
	if len(d.Bridge) > 15 {
		errs = append(errs, fmt.Errorf("bridge name %q is longer than 15 bytes", d.Bridge))
	}
	if d.Subnet == "" {
		d.Subnet = DefaultSubnet
	}
	p, err := netip.ParsePrefix(d.Subnet)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("subnet %q: %v", d.Subnet, err))
	case !p.Addr().Is4() || p.Bits() > 30:
		errs = append(errs, fmt.Errorf("subnet %q: use an IPv4 subnet of at most /30", d.Subnet))
	default:
		d.prefix = p.Masked()
	}
	if d.Masquerade == nil {
		t := true
		d.Masquerade = &t
	}
	if d.MTU < 0 {
		errs = append(errs, fmt.Errorf("mtu %d", d.MTU))
	}
	if len(c.CNIPluginDirs) == 0 {
		c.CNIPluginDirs = DefaultPluginDirs
	}
	if c.NetNSDir == "" {
		c.NetNSDir = DefaultNetNSDir
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	for _, p := range append([]string{c.NetNSDir, c.StateDir}, c.CNIPluginDirs...) {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%q must be an absolute path", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}
