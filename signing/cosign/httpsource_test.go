package cosign

import (
	"context"
	"testing"

	"github.com/karman-project/karman/signing"
)

// TestRegistrySourceToo: the go-containerregistry based source, which
// tools use, finds and verifies the same signatures as HTTPSource.
func TestRegistrySourceToo(t *testing.T) {
	for _, api := range []bool{true, false} {
		e := newEnv(t, api)
		k := newKey(t, "p256", 0)
		e.pushSimple(t, k)
		e.pushBundle(t, k)
		e.src = RegistrySource(e.repo)
		res := e.verify(t, k.key)
		if res.Verified == nil || len(res.Signatures) != 2 {
			t.Errorf("referrers API %v: %+v", api, res)
		}
	}
}

// TestVerifyFirst: with a trusted signature in either place, VerifyFirst
// accepts; with none, it reports every signature like Verify.
func TestVerifyFirst(t *testing.T) {
	for _, api := range []bool{true, false} {
		e := newEnv(t, api)
		good, other := newKey(t, "p256", 0), newKey(t, "p256", 1)
		e.pushSimple(t, other)
		e.pushBundle(t, good)
		res, err := VerifyFirst(context.Background(), e.src, e.d, []signing.Key{good.key})
		if err != nil || res.Verified == nil || res.Verified.KeyID != good.key.ID {
			t.Errorf("referrers API %v: VerifyFirst = %+v, %v", api, res, err)
		}
		res, err = VerifyFirst(context.Background(), e.src, e.d, []signing.Key{newKey(t, "p256", 2).key})
		if err != nil || res.Verified != nil || len(res.Signatures) != 2 {
			t.Errorf("referrers API %v: untrusted keys: %+v, %v", api, res, err)
		}
	}
}
