package testimage

import (
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DynamicBusybox is where scripts/setup.sh --tests puts Debian's dynamically
// linked busybox (package busybox, which conflicts with the busybox-static
// the other images use, so it is unpacked, not installed).
const DynamicBusybox = "/var/cache/karman/busybox-dynamic/bin/busybox"

// ErrNoCRIParts is returned (wrapped) by CRIImages when the dynamic busybox
// or the look-alike binary is missing.
var ErrNoCRIParts = errors.New("needs Debian's dynamic busybox unpacked by scripts/setup.sh --tests and bin/karman-lookalike (make build)")

// CRIOptions says where CRIImages finds its parts.
type CRIOptions struct {
	// Busybox is Debian's dynamically linked busybox (default
	// DynamicBusybox). The shared libraries it needs are copied from the
	// host.
	Busybox string
	// Lookalike is the static karman-lookalike binary (tests/cmd/
	// karman-lookalike): nginx, httpd, nnp, pause, pgrep and ipcs.
	Lookalike string
}

// CRIImage is one look-alike image and the public references critest pulls
// it by.
type CRIImage struct {
	Refs  []string
	Image v1.Image
}

// CRIPasswd and CRIGroup are /etc/passwd and /etc/group of the CRI
// look-alikes, the accounts of the public busybox image.
const (
	CRIPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n" +
		"bin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\n" +
		"sync:x:4:100:sync:/bin:/bin/sync\n" +
		"mail:x:8:8:mail:/var/spool/mail:/bin/false\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"operator:x:37:37:Operator:/var:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/home:/bin/false\n"
	CRIGroup = "root:x:0:\n" +
		"daemon:x:1:\n" +
		"bin:x:2:\n" +
		"sys:x:3:\n" +
		"adm:x:4:\n" +
		"tty:x:5:\n" +
		"disk:x:6:\n" +
		"wheel:x:10:root\n" +
		"mail:x:8:\n" +
		"www-data:x:33:\n" +
		"operator:x:37:\n" +
		"staff:x:50:\n" +
		"users:x:100:\n" +
		"nogroup:x:65534:\n"
)

// Public names (without registry host) of the look-alikes.
const (
	criE2E   = "registry.k8s.io/e2e-test-images/"
	criTools = "gcr.io/k8s-staging-cri-tools/"
)

// CRIImages builds look-alikes of every image critest (sigs.k8s.io/
// cri-tools v1.37.0, pkg/validate and pkg/framework) pulls, to be served by a
// loopback registry under the same repository paths:
//
//   - registry.k8s.io/e2e-test-images/busybox:1.29-2, the default image:
//     Debian's dynamic busybox with every applet a hard link in /bin (a
//     masked /bin/ls must fail `sh -c ls`: the static build runs applets
//     in-process, and masking a symlink would mask busybox itself), the
//     host's shared libraries it needs, /usr/bin/pgrep and /usr/bin/ipcs
//     (karman-lookalike: Debian's busybox has neither), and the accounts of
//     the public image (www-data is 33);
//   - e2e-test-images/nginx:1.14-2 and gcr.io/k8s-staging-cri-tools/
//     hostnet-nginx-ARCH (listening on 12003), whose /usr/sbin/nginx is
//     karman-lookalike: `pidof nginx` finds it, its /proc/PID/cmdline says
//     "nginx: master process", it writes /var/run/nginx.pid;
//   - e2e-test-images/httpd:2.4.39-4 (httpd-foreground on port 80, "httpd"
//     in its log) and e2e-test-images/nonewprivs:1.3 (a setuid-root
//     /usr/local/bin/nnp printing "Effective uid: N");
//   - registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9, one image;
//   - the cri-tools test images: test-image-user-{uid,username,uid-group,
//     username-group} (users 1002, www-data, 1003:1004, www-data:1004),
//     test-image-predefined-group (user 1000, default-user in group
//     group-defined-in-image 50000), test-image-{1,2,3,latest}:latest
//     (different images), test-image-tags:{1,2,3} (one image),
//     test-image-tag:{test,all} (two images).
//
// test-image-digest is pinned by critest to an upstream digest, which no
// rebuilt image can have: it is not built.
func CRIImages(o CRIOptions) ([]CRIImage, error) {
	if o.Busybox == "" {
		o.Busybox = DynamicBusybox
	}
	if o.Lookalike == "" {
		return nil, fmt.Errorf("no karman-lookalike binary given: %w", ErrNoCRIParts)
	}
	la, err := os.ReadFile(o.Lookalike)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrNoCRIParts)
	}
	base, err := criBase(o.Busybox, la)
	if err != nil {
		return nil, err
	}
	sh := func(c *v1.Config) { c.Cmd = []string{"sh"} }
	files := func(files map[string]string, set func(*v1.Config)) func() (v1.Image, error) {
		return func() (v1.Image, error) { return criDerive(base, files, nil, set) }
	}
	nginx := func(files map[string]string, port string) func() (v1.Image, error) {
		return func() (v1.Image, error) {
			return criDerive(base, files, map[string]string{"usr/sbin/nginx": string(la)}, func(c *v1.Config) {
				c.Cmd = []string{"nginx", "-g", "daemon off;"}
				c.ExposedPorts = map[string]struct{}{port + "/tcp": {}}
				c.StopSignal = "SIGQUIT"
			})
		}
	}
	user := func(u string) func(*v1.Config) { return func(c *v1.Config) { c.Cmd, c.User = []string{"sh"}, u } }
	index := "Welcome to nginx!\n"
	specs := []struct {
		refs  []string
		build func() (v1.Image, error)
	}{
		{[]string{criE2E + "busybox:1.29-2"}, files(nil, sh)},
		{[]string{criE2E + "nginx:1.14-2"}, nginx(map[string]string{"usr/share/nginx/html/index.html": index}, "80")},
		{[]string{criTools + "hostnet-nginx-" + runtime.GOARCH}, nginx(map[string]string{
			"usr/share/nginx/html/index.html": index,
			"etc/nginx/conf.d/default.conf":   "server {\n    listen       12003;\n    server_name  localhost;\n}\n",
		}, "12003")},
		{[]string{criE2E + "httpd:2.4.39-4"}, func() (v1.Image, error) {
			return criDerive(base, map[string]string{"usr/local/apache2/htdocs/index.html": "<html><body><h1>It works!</h1></body></html>\n"},
				map[string]string{"usr/local/bin/httpd-foreground": string(la)}, func(c *v1.Config) {
					c.Cmd = []string{"httpd-foreground"}
					c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
					c.StopSignal = "SIGWINCH"
				})
		}},
		{[]string{criE2E + "nonewprivs:1.3"}, func() (v1.Image, error) { return criNNP(base, la) }},
		{[]string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}, func() (v1.Image, error) { return criPause(la) }},
		{[]string{criTools + "test-image-user-uid"}, files(nil, user("1002"))},
		{[]string{criTools + "test-image-user-username"}, files(nil, user("www-data"))},
		{[]string{criTools + "test-image-user-uid-group"}, files(nil, user("1003:1004"))},
		{[]string{criTools + "test-image-user-username-group"}, files(nil, user("www-data:1004"))},
		{[]string{criTools + "test-image-predefined-group"}, files(map[string]string{
			"etc/passwd": CRIPasswd + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n",
			"etc/group":  CRIGroup + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
		}, user("1000"))},
		{[]string{criTools + "test-image-1:latest"}, files(map[string]string{"test-image-1": ""}, sh)},
		{[]string{criTools + "test-image-2:latest"}, files(map[string]string{"test-image-2": ""}, sh)},
		{[]string{criTools + "test-image-3:latest"}, files(map[string]string{"test-image-3": ""}, sh)},
		{[]string{criTools + "test-image-latest:latest"}, files(map[string]string{"test-image-latest": ""}, sh)},
		{[]string{criTools + "test-image-tags:1", criTools + "test-image-tags:2", criTools + "test-image-tags:3"}, files(map[string]string{"same-image": ""}, sh)},
		{[]string{criTools + "test-image-tag:test"}, files(map[string]string{"test": ""}, sh)},
		{[]string{criTools + "test-image-tag:all"}, files(map[string]string{"all": ""}, sh)},
	}
	var out []CRIImage
	var errs []error
	for _, s := range specs {
		img, err := s.build()
		if err != nil {
			errs = append(errs, fmt.Errorf("testimage: %s: %w", s.refs[0], err))
			continue
		}
		out = append(out, CRIImage{Refs: s.refs, Image: img})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// criBase is the layer every look-alike but pause starts from.
func criBase(busybox string, lookalike []byte) (v1.Image, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrNoCRIParts)
	}
	libs, err := sharedLibraries(busybox)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %v: %w", busybox, err, ErrNoCRIParts)
	}
	b := newTarBuilder(len(bin) + len(lookalike) + 8<<20)
	dirs := map[string]bool{}
	mkdir := func(p string, mode int64) {
		var cur string
		for _, c := range strings.Split(p, "/") {
			cur = strings.TrimPrefix(cur+"/"+c, "/")
			if !dirs[cur] {
				dirs[cur] = true
				m := int64(0o755)
				if cur == p {
					m = mode
				}
				b.dir(cur, m)
			}
		}
	}
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "sys", "usr/bin", "usr/sbin", "usr/local/bin", "var/run", "var/www"} {
		mkdir(d, 0o755)
	}
	mkdir("root", 0o700)
	mkdir("tmp", 0o1777)
	b.file("bin/busybox", 0o755, bin)
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		b.link("bin/"+a, "bin/busybox", 0o755)
	}
	for _, l := range libs {
		data, err := os.ReadFile(l)
		if err != nil {
			return nil, err
		}
		p := strings.TrimPrefix(l, "/")
		mkdir(filepath.Dir(p), 0o755)
		b.file(p, 0o755, data)
	}
	b.file("usr/bin/pgrep", 0o755, lookalike)
	b.link("usr/bin/ipcs", "usr/bin/pgrep", 0o755)
	b.file("etc/passwd", 0o644, []byte(CRIPasswd))
	b.file("etc/group", 0o644, []byte(CRIGroup))
	return b.appendTo(emptyOCI(), "karman testimage: CRI look-alike base (Debian's dynamic busybox)")
}

// criDerive adds a layer of files (path -> content, mode 0644) and
// executables (path -> content, mode 0755) to base, and sets its config.
func criDerive(base v1.Image, files, exes map[string]string, set func(*v1.Config)) (v1.Image, error) {
	img := base
	if len(files)+len(exes) > 0 {
		b := newTarBuilder(16 << 10)
		seen := map[string]bool{}
		for _, p := range append(sortedKeys(files), sortedKeys(exes)...) {
			var cur string
			parts := strings.Split(p, "/")
			for _, c := range parts[:len(parts)-1] {
				cur = strings.TrimPrefix(cur+"/"+c, "/")
				if !seen[cur] {
					seen[cur] = true
					b.dir(cur, 0o755)
				}
			}
		}
		for _, p := range sortedKeys(files) {
			b.file(p, 0o644, []byte(files[p]))
		}
		for _, p := range sortedKeys(exes) {
			b.file(p, 0o755, []byte(exes[p]))
		}
		var err error
		if img, err = b.appendTo(base, "karman testimage: CRI look-alike files"); err != nil {
			return nil, err
		}
	}
	return criConfig(img, set)
}

func criConfig(img v1.Image, set func(*v1.Config)) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	var c v1.Config
	set(&c)
	c.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, c.Env...)
	cf.Config = c
	return mutate.ConfigFile(img, cf)
}

// criNNP is nonewprivs: /usr/local/bin/nnp, a setuid-root copy of the
// look-alike.
func criNNP(base v1.Image, lookalike []byte) (v1.Image, error) {
	b := newTarBuilder(len(lookalike) + 4<<10)
	b.dir("usr", 0o755)
	b.dir("usr/local", 0o755)
	b.dir("usr/local/bin", 0o755)
	b.file("usr/local/bin/nnp", 0o4755, lookalike)
	img, err := b.appendTo(base, "karman testimage: nnp (setuid root)")
	if err != nil {
		return nil, err
	}
	return criConfig(img, func(c *v1.Config) { c.Entrypoint = []string{"/usr/local/bin/nnp"} })
}

// criPause is the pause image: the look-alike alone as /pause, run as
// 65535:65535 like the public one.
func criPause(lookalike []byte) (v1.Image, error) {
	b := newTarBuilder(len(lookalike) + 4<<10)
	b.file("pause", 0o755, lookalike)
	img, err := b.appendTo(emptyOCI(), "karman testimage: pause")
	if err != nil {
		return nil, err
	}
	return criConfig(img, func(c *v1.Config) { c.Entrypoint = []string{"/pause"}; c.User = "65535:65535" })
}

// sharedLibraries lists the host files a dynamic executable needs: its
// interpreter and, transitively, its DT_NEEDED libraries.
func sharedLibraries(path string) ([]string, error) {
	dirs := []string{"/lib/" + multiarch(), "/usr/lib/" + multiarch(), "/lib64", "/lib", "/usr/lib"}
	var out []string
	seen := map[string]bool{}
	var walk func(p string, top bool) error
	walk = func(p string, top bool) error {
		f, err := elf.Open(p)
		if err != nil {
			return fmt.Errorf("%v: %w", err, ErrNoCRIParts)
		}
		defer f.Close()
		if top {
			interp := ""
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					buf := make([]byte, prog.Filesz)
					if _, err := prog.ReadAt(buf, 0); err != nil {
						return err
					}
					interp = strings.TrimRight(string(buf), "\x00")
				}
			}
			if interp == "" {
				return fmt.Errorf("%s is statically linked, want Debian's dynamic busybox: %w", p, ErrNoCRIParts)
			}
			seen[interp] = true
			out = append(out, interp)
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return err
		}
		for _, n := range needed {
			found := ""
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, n)); err == nil {
					found = filepath.Join(d, n)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, not found in %v", p, n, dirs)
			}
			if seen[found] || strings.HasPrefix(n, "ld-linux") {
				continue
			}
			seen[found] = true
			out = append(out, found)
			if err := walk(found, false); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(path, true)
}

func multiarch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	}
	return runtime.GOARCH + "-linux-gnu"
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// emptyOCI is an image of no layers with OCI media types.
func emptyOCI() v1.Image {
	return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
}
