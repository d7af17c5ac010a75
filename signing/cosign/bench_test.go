package cosign

import (
	"context"
	"testing"

	"github.com/karman-project/karman/signing"
)

// BenchmarkVerify is one Verify of an image with one signature, against an
// in-process registry on loopback: the registry round trips (referrers,
// then the .sig tag; HEAD then GET for each manifest; the blob) dominate.
func BenchmarkVerify(b *testing.B) {
	for _, format := range []string{FormatSimpleSigning, FormatBundle} {
		for _, api := range []bool{true, false} {
			name := format + "/referrersAPI"
			if !api {
				name = format + "/tagFallback"
			}
			b.Run(name, func(b *testing.B) {
				e := newEnv(b, api)
				k := newKey(b, "p256", 0)
				if format == FormatBundle {
					e.pushBundle(b, k)
				} else {
					e.pushSimple(b, k)
				}
				keys := []signing.Key{newKey(b, "p256", 1).key, k.key}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					res, err := Verify(ctx, e.src, e.d, keys)
					if err != nil || res.Verified == nil {
						b.Fatalf("Verify = %+v, %v", res, err)
					}
				}
			})
		}
	}
}
