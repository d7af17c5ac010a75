package cosign

import (
	"testing"
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
