package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// registryPlaceholder as the host of --push means the --serve-registry one.
const registryPlaceholder = "REGISTRY"

type config struct {
	kind, compression, platform      string
	bigMB, bigFiles, bigLayers       int
	layout, tag, archive, archiveTag string
	push, serveRegistry              string
	pushTimeout                      time.Duration
	genKey, signKey, signFormat      string
	criImages, lookalike, busybox    string
}

func main() {
	var c config
	fs := flag.NewFlagSet("karman-testimage", flag.ContinueOnError)
	fs.StringVar(&c.kind, "kind", "busybox", "image `kind`: busybox, multilayer or big")
	fs.IntVar(&c.bigMB, "big-mb", 200, "big: uncompressed data in MiB")
	fs.IntVar(&c.bigFiles, "big-files", 900, "big: number of files")
	fs.IntVar(&c.bigLayers, "big-layers", 6, "big: number of data layers (on top of busybox)")
	fs.StringVar(&c.compression, "compression", "gzip", "layer compression: gzip, zstd or none")
	fs.StringVar(&c.platform, "platform", "", "platform recorded in the config, e.g. linux/arm64 (default linux/<host arch>)")
	fs.StringVar(&c.layout, "layout", "", "write an OCI image layout to `DIR` (oci:DIR:TAG)")
	fs.StringVar(&c.tag, "tag", "latest", "ref name of the image in --layout")
	fs.StringVar(&c.archive, "docker-archive", "", "write a `docker save` style tarball to `FILE`")
	fs.StringVar(&c.archiveTag, "archive-tag", "", "repo tag in --docker-archive (default karman-test/KIND:TAG)")
	fs.StringVar(&c.push, "push", "", "push to `HOST/REPO:TAG` on a loopback registry (HOST \"REGISTRY\" = --serve-registry's)")
	fs.StringVar(&c.serveRegistry, "serve-registry", "", "run Debian's docker-registry on a free loopback port with storage in `DATADIR`, print REGISTRY=HOST:PORT and serve until SIGTERM/SIGINT")
	fs.DurationVar(&c.pushTimeout, "push-timeout", 10*time.Minute, "timeout for --push")
	fs.StringVar(&c.genKey, "gen-key", "", "write a test key pair, cosign.key (unencrypted PKCS #8) and cosign.pub, to `DIR`")
	fs.StringVar(&c.signKey, "sign-key", "", "after --push, sign the image with the private key in `FILE` (as --gen-key writes it)")
	fs.StringVar(&c.signFormat, "sign-format", "simple", "signature format for --sign-key: simple (the .sig tag), bundle (sigstore bundle referrer) or both")
	fs.StringVar(&c.criImages, "cri-images", "", "build the look-alikes of the images critest pulls and push each under its public repository path to the loopback registry `HOST` (\"REGISTRY\" = --serve-registry's), signed with --sign-key if given")
	fs.StringVar(&c.lookalike, "lookalike", "", "the karman-lookalike binary for --cri-images (default: beside this program)")
	fs.StringVar(&c.busybox, "dynamic-busybox", testimage.DynamicBusybox, "Debian's dynamic busybox for --cri-images")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: karman-testimage [flags]\n\nBuilds Karman's busybox test images, writes them and prints the manifest digest.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "karman-testimage: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "karman-testimage: %v\n", err)
		os.Exit(1)
	}
}

func run(c config) error {
	// Validate everything before doing any work.
	comp, err := testimage.ParseCompression(c.compression)
	if err != nil {
		return err
	}
	opts := testimage.Options{Compression: comp}
	if c.platform != "" {
		p, err := v1.ParsePlatform(c.platform)
		if err != nil {
			return fmt.Errorf("--platform: %w", err)
		}
		opts.Platform = p
	}
	switch c.kind {
	case "busybox", "multilayer", "big":
	default:
		return fmt.Errorf("--kind %q: want busybox, multilayer or big", c.kind)
	}
	if c.signKey != "" && c.push == "" && c.criImages == "" {
		return fmt.Errorf("--sign-key signs what --push or --cri-images pushed; give one")
	}
	if c.criImages != "" {
		if c.criImages == registryPlaceholder {
			if c.serveRegistry == "" {
				return fmt.Errorf("--cri-images %s needs --serve-registry", c.criImages)
			}
		} else if strings.Contains(c.criImages, "/") || !testregistry.IsLoopback(c.criImages) {
			return fmt.Errorf("--cri-images %q: want a loopback registry HOST:PORT (127.0.0.1, ::1, localhost)", c.criImages)
		}
		if c.lookalike == "" {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			c.lookalike = filepath.Join(filepath.Dir(exe), "karman-lookalike")
		}
	}
	switch c.signFormat {
	case "simple", "bundle", "both":
	default:
		return fmt.Errorf("--sign-format %q: want simple, bundle or both", c.signFormat)
	}
	if c.genKey != "" {
		if err := genKey(c.genKey); err != nil {
			return err
		}
		if c.push == "" && c.layout == "" && c.archive == "" && c.serveRegistry == "" && c.criImages == "" {
			return nil
		}
	}
	if c.push != "" {
		host, _, _ := strings.Cut(c.push, "/")
		if host == registryPlaceholder {
			if c.serveRegistry == "" {
				return fmt.Errorf("--push %s needs --serve-registry", c.push)
			}
		} else if !strings.Contains(c.push, "/") || !testregistry.IsLoopback(host) {
			return fmt.Errorf("--push %q: refusing to push to %q, only loopback registries (127.0.0.1, ::1, localhost) are allowed", c.push, host)
		}
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()

	if c.serveRegistry != "" {
		host, stop, err := testregistry.StartDistribution(ctx, c.serveRegistry)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Printf("REGISTRY=%s\n", host)
		if rest, ok := strings.CutPrefix(c.push, registryPlaceholder+"/"); ok {
			c.push = host + "/" + rest
		}
		if c.push != "" || c.layout != "" || c.archive != "" {
			if err := build(ctx, c, opts); err != nil {
				return err
			}
		}
		if c.criImages == registryPlaceholder {
			if err := pushCRI(ctx, c, host); err != nil {
				stop()
				return err
			}
		}
		<-ctx.Done()
		return stop()
	}
	if c.criImages != "" {
		if err := pushCRI(ctx, c, c.criImages); err != nil {
			return err
		}
		if c.push == "" && c.layout == "" && c.archive == "" {
			return nil
		}
	}
	return build(ctx, c, opts)
}

// pushCRI pushes testimage.CRIImages to host under their public repository
// paths (registry.k8s.io/pause:3.9 -> HOST/pause:3.9), signs them if asked,
// and prints "REF DIGEST" per public reference, then "CRI-IMAGES=N".
func pushCRI(ctx context.Context, c config, host string) error {
	imgs, err := testimage.CRIImages(testimage.CRIOptions{Busybox: c.busybox, Lookalike: c.lookalike})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, c.pushTimeout)
	defer cancel()
	n := 0
	for _, ci := range imgs {
		digest, err := ci.Image.Digest()
		if err != nil {
			return err
		}
		raw, err := ci.Image.RawManifest()
		if err != nil {
			return err
		}
		mt, err := ci.Image.MediaType()
		if err != nil {
			return err
		}
		for _, ref := range ci.Refs {
			_, path, _ := strings.Cut(ref, "/")
			dst := host + "/" + path
			if _, err := testregistry.Push(pctx, dst, ci.Image); err != nil {
				return err
			}
			if c.signKey != "" {
				if err := sign(pctx, dst, v1.Descriptor{MediaType: mt, Digest: digest, Size: int64(len(raw))}, c.signKey, c.signFormat); err != nil {
					return fmt.Errorf("signing %s: %w", dst, err)
				}
			}
			fmt.Printf("%s %s\n", ref, digest)
			n++
		}
	}
	fmt.Printf("CRI-IMAGES=%d\n", n)
	return nil
}

func build(ctx context.Context, c config, opts testimage.Options) error {
	var img v1.Image
	var err error
	switch c.kind {
	case "busybox":
		img, err = testimage.Busybox(opts)
	case "multilayer":
		img, err = testimage.MultiLayer(opts)
	case "big":
		img, err = testimage.Big(opts, c.bigMB, c.bigFiles, c.bigLayers)
	}
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if c.layout != "" {
		if _, err := testimage.WriteLayout(c.layout, c.tag, img); err != nil {
			return err
		}
	}
	if c.archive != "" {
		tag := c.archiveTag
		if tag == "" {
			tag = "karman-test/" + c.kind + ":" + c.tag
		}
		if err := testimage.WriteDockerArchive(c.archive, tag, img); err != nil {
			return err
		}
	}
	if c.push != "" {
		pctx, cancel := context.WithTimeout(ctx, c.pushTimeout)
		defer cancel()
		if _, err := testregistry.Push(pctx, c.push, img); err != nil {
			return err
		}
		if c.signKey != "" {
			raw, err := img.RawManifest()
			if err != nil {
				return err
			}
			mt, err := img.MediaType()
			if err != nil {
				return err
			}
			if err := sign(pctx, c.push, v1.Descriptor{MediaType: mt, Digest: digest, Size: int64(len(raw))}, c.signKey, c.signFormat); err != nil {
				return fmt.Errorf("signing %s: %w", c.push, err)
			}
		}
	}
	fmt.Println(digest)
	return nil
}
