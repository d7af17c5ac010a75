package testimage

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// bigSeed seeds every PRNG used by Big: the output depends only on the
// arguments (and the compressor versions in go.sum).
const bigSeed = 0x6b61726d616e // "karman"

// segment is the unit in which file data is either random or text. It is
// smaller than gzip's 32 KiB window so text segments compress well.
const segment = 16 << 10

// randomPermille is the share (in 1/1000) of segments that are random bytes;
// the rest is log-like text. Tuned so gzip gives about 40% of the input.
const randomPermille = 175

var words = [...]string{
	"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
	"india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
	"quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
	"yankee", "zulu", "layer", "image", "manifest", "digest", "blob", "config",
	"container", "runtime", "overlay", "snapshot", "mount", "namespace", "cgroup", "process",
	"signal", "socket", "volume", "network", "bridge", "route", "address", "port",
	"fetch", "verify", "unpack", "extract", "commit", "rollback", "retry", "timeout",
	"started", "stopped", "healthy", "degraded", "pending", "ready", "failed", "done",
}

var levels = [...]string{"DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"}

// dataGen produces deterministic, partly compressible file contents.
type dataGen struct {
	rng  *rand.Rand
	line []byte
	sec  int
}

func (g *dataGen) fill(p []byte) {
	for len(p) > 0 {
		n := min(segment, len(p))
		if g.rng.IntN(1000) < randomPermille {
			g.random(p[:n])
		} else {
			g.text(p[:n])
		}
		p = p[n:]
	}
}

func (g *dataGen) random(p []byte) {
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, g.rng.Uint64())
		p = p[8:]
	}
	if len(p) > 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], g.rng.Uint64())
		copy(p, b[:])
	}
}

func (g *dataGen) text(p []byte) {
	for len(p) > 0 {
		g.sec++
		l := g.line[:0]
		l = append(l, "2024-01-01T"...)
		h, m, s := g.sec/3600%24, g.sec/60%60, g.sec%60
		l = append(l, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':', byte('0'+s/10), byte('0'+s%10))
		l = append(l, "Z "...)
		l = append(l, levels[g.rng.IntN(len(levels))]...)
		l = append(l, " component="...)
		l = append(l, words[g.rng.IntN(len(words))]...)
		l = append(l, " msg=\""...)
		for i, n := 0, 3+g.rng.IntN(6); i < n; i++ {
			if i > 0 {
				l = append(l, ' ')
			}
			l = append(l, words[g.rng.IntN(len(words))]...)
		}
		l = append(l, "\" request_id="...)
		l = strconv.AppendUint(l, uint64(g.rng.Uint32()), 16)
		l = append(l, " bytes="...)
		l = strconv.AppendInt(l, int64(g.rng.IntN(100000)), 10)
		l = append(l, '\n')
		g.line = l
		p = p[copy(p, l):]
	}
}

// Big returns Busybox plus `layers` extra layers holding about totalMB MiB of
// uncompressed file data spread over about `files` files under
// /big/layerNN/dNNN/fNNNNN.dat. The data is deterministic (seeded PRNG), a
// mix of pseudo-random segments and repetitive log-like text, so gzip
// compresses it to roughly 40% of its size. Layers are built and compressed in
// parallel, once, in memory (Big(opts, 200, 900, 6) keeps ~80 MB of gzip
// blobs). Meant for fetch/unpack benchmarks.
func Big(opts Options, totalMB, files, layers int) (v1.Image, error) {
	if totalMB < 0 || files < 1 || layers < 1 {
		return nil, fmt.Errorf("testimage: Big needs totalMB >= 0, files >= 1 and layers >= 1 (got %d, %d, %d)", totalMB, files, layers)
	}
	if files < layers {
		files = layers
	}
	img, err := Busybox(opts)
	if err != nil {
		return nil, err
	}

	// File sizes: uniform weights in [0.25, 1.75) scaled to the total.
	total := int64(totalMB) << 20
	rng := rand.New(rand.NewPCG(bigSeed, 0))
	weights := make([]float64, files)
	var sum float64
	for i := range weights {
		weights[i] = 0.25 + 1.5*rng.Float64()
		sum += weights[i]
	}
	sizes := make([]int64, files)
	var assigned int64
	for i, w := range weights {
		sizes[i] = int64(float64(total) * w / sum)
		assigned += sizes[i]
	}
	sizes[files-1] += total - assigned

	built := make([]*memLayer, layers)
	errs := make([]error, layers)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for li := range layers {
		first, last := li*files/layers, (li+1)*files/layers
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			built[li], errs[li] = bigLayer(li, first, sizes[first:last], opts.Compression)
		}()
	}
	wg.Wait()

	adds := make([]mutate.Addendum, 0, layers)
	for li, l := range built {
		if errs[li] != nil {
			return nil, errs[li]
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: history(fmt.Sprintf("karman testimage: big layer %d/%d", li+1, layers))})
	}
	return mutate.Append(img, adds...)
}

// bigFilesPerDir is how many files Big puts in one directory.
const bigFilesPerDir = 64

func bigLayer(li, first int, sizes []int64, comp Compression) (*memLayer, error) {
	var total, largest int64
	for _, s := range sizes {
		total += s
		largest = max(largest, s)
	}
	g := &dataGen{rng: rand.New(rand.NewPCG(bigSeed, uint64(li)+1)), line: make([]byte, 0, 256)}
	buf := make([]byte, largest)

	b := newTarBuilder(int(total) + 1024*len(sizes) + 4096)
	b.dir("big", 0o755)
	layerDir := fmt.Sprintf("big/layer%02d", li)
	b.dir(layerDir, 0o755)
	dir := ""
	for i, size := range sizes {
		n := first + i
		if i%bigFilesPerDir == 0 {
			dir = fmt.Sprintf("%s/d%03d", layerDir, i/bigFilesPerDir)
			b.dir(dir, 0o755)
		}
		data := buf[:size]
		g.fill(data)
		b.file(fmt.Sprintf("%s/f%05d.dat", dir, n), 0o644, data)
	}
	data, err := b.bytes()
	if err != nil {
		return nil, err
	}
	return newLayer(data, comp)
}
