package policy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/karman-project/karman/internal/atomicfile"
	"github.com/karman-project/karman/internal/limitio"
	"github.com/karman-project/karman/internal/lockfile"
	"github.com/karman-project/karman/signing"
)

// MaxKeySize bounds a public key file.
const MaxKeySize = 64 << 10

// Error classes of the configuration directory.
var (
	// ErrNoPolicy: policy.json does not exist, so every image is refused.
	ErrNoPolicy = errors.New("no signature policy")
	// ErrUnknownKey: no trusted key has that ID.
	ErrUnknownKey = errors.New("unknown key")
)

// Config is a configuration directory (--config-dir): policy.json beside
// keys/, the store of trusted public keys, one <id>.pub per key.
//
// Changes go through Trust, SetRequirement and Untrust, which hold an
// exclusive lock on the directory, keep every other part of the policy,
// and replace files atomically (write, fsync, rename).
type Config struct{ Dir string }

// PolicyPath is the policy file.
func (c Config) PolicyPath() string { return filepath.Join(c.Dir, "policy.json") }

// KeysDir is the key store.
func (c Config) KeysDir() string { return filepath.Join(c.Dir, "keys") }

func (c Config) keyPath(id string) string { return filepath.Join(c.KeysDir(), id+".pub") }

// Load reads and validates policy.json. A missing file is ErrNoPolicy.
func (c Config) Load() (*Policy, error) {
	b, err := readLimited(c.PolicyPath(), MaxPolicySize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: %w", c.PolicyPath(), ErrNoPolicy)
	}
	if err != nil {
		return nil, err
	}
	return Parse(c.PolicyPath(), b)
}

// Key reads the trusted key id from the store.
func (c Config) Key(id string) (signing.Key, error) {
	if !isKeyID(id) {
		return signing.Key{}, fmt.Errorf("key %q is not a key ID: %w", id, ErrUnknownKey)
	}
	b, err := readLimited(c.keyPath(id), MaxKeySize)
	if errors.Is(err, fs.ErrNotExist) {
		return signing.Key{}, fmt.Errorf("key %s is not in %s: %w", id, c.KeysDir(), ErrUnknownKey)
	}
	if err != nil {
		return signing.Key{}, err
	}
	k, err := signing.ParsePublicKey(b)
	if err != nil {
		return signing.Key{}, fmt.Errorf("%s: %w", c.keyPath(id), err)
	}
	if k.ID != id {
		return signing.Key{}, fmt.Errorf("%s holds key %s, not %s; remove the file and add the key again with karman trust add: %w", c.keyPath(id), k.ID, id, signing.ErrInvalidKey)
	}
	return k, nil
}

// Keys returns the keys the policy names, loading each from the store.
func (c Config) Keys(p *Policy) (map[string]signing.Key, error) {
	keys := map[string]signing.Key{}
	for _, id := range p.KeyIDs() {
		k, err := c.Key(id)
		if err != nil {
			scope := "the default"
			for _, s := range p.Scopes {
				if slices.Contains(s.Requirement.Keys, id) {
					scope = "scope " + s.Name
					break
				}
			}
			return nil, fmt.Errorf("%s: %s requires key %s: %w; add it with `karman trust add --scope SCOPE KEY.pub` or remove it with `karman trust rm %.12s`", c.PolicyPath(), scope, id, err, id)
		}
		keys[id] = k
	}
	return keys, nil
}

// StoredKeys lists every key in the store, by ID.
func (c Config) StoredKeys() ([]signing.Key, error) {
	ents, err := os.ReadDir(c.KeysDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []signing.Key
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".pub")
		if !ok || !isKeyID(id) {
			continue
		}
		k, err := c.Key(id)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Change describes what a trust operation did, for the user.
type Change struct {
	// Key is the key added (Trust) or removed (Untrust).
	Key signing.Key
	// Created is set when policy.json did not exist and was created with
	// the default reject.
	Created bool
	// Notes say what changed, one sentence each.
	Notes []string
}

// Trust adds the public key in pemBytes to the store and to scope's
// requirement: a "signed" requirement gains the key; any other requirement
// of that scope, or no entry yet, becomes "signed" by this key alone.
func (c Config) Trust(ctx context.Context, scope string, pemBytes []byte) (Change, error) {
	if _, err := NormalizeScope(scope); err != nil {
		return Change{}, err
	}
	k, err := signing.ParsePublicKey(pemBytes)
	if err != nil {
		return Change{}, err
	}
	blk, _ := pem.Decode(pemBytes)
	var ch Change
	ch.Key = k
	err = c.update(ctx, &ch, func(p *Policy) error {
		if err := writeAtomic(c.keyPath(k.ID), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: blk.Bytes}), 0o644); err != nil {
			return err
		}
		r := Requirement{Type: Signed, Keys: []string{k.ID}}
		if i := p.Find(scope); i >= 0 {
			old := p.Scopes[i].Requirement
			if old.Type == Signed {
				if slices.Contains(old.Keys, k.ID) {
					ch.Notes = append(ch.Notes, fmt.Sprintf("scope %s already trusts key %s", scope, k.ID))
					return nil
				}
				r.Keys = append(slices.Clone(old.Keys), k.ID)
			} else {
				ch.Notes = append(ch.Notes, fmt.Sprintf("scope %s was %s; it now requires a signature", scope, old.Type))
			}
		}
		if err := p.Set(scope, r); err != nil {
			return err
		}
		ch.Notes = append(ch.Notes, fmt.Sprintf("scope %s: %s", scope, r))
		return nil
	})
	return ch, err
}

// SetRequirement gives scope a requirement without keys: reject or
// insecure-accept-anything. Keys only that scope used leave the store.
func (c Config) SetRequirement(ctx context.Context, scope string, t Type) (Change, error) {
	if t == Signed {
		return Change{}, fmt.Errorf("a signed requirement needs a key: use Trust: %w", ErrInvalid)
	}
	var ch Change
	err := c.update(ctx, &ch, func(p *Policy) error {
		var dropped []string
		if i := p.Find(scope); i >= 0 {
			dropped = p.Scopes[i].Requirement.Keys
		}
		if err := p.Set(scope, Requirement{Type: t}); err != nil {
			return err
		}
		ch.Notes = append(ch.Notes, fmt.Sprintf("scope %s: %s", scope, t))
		return c.dropUnused(p, dropped, &ch)
	})
	return ch, err
}

// Untrust removes trust: with keyID (a unique prefix of a key ID) and no
// scope, the key leaves every scope and the store; with a scope and no
// key, the scope leaves the policy (its images fall to the next broader
// scope or the default); with both, the key leaves that scope only. A
// "signed" scope left without keys becomes "reject", never something
// weaker. Keys no scope uses any more leave the store.
func (c Config) Untrust(ctx context.Context, keyID, scope string) (Change, error) {
	if keyID == "" && scope == "" {
		return Change{}, errors.New("name a key ID or a scope to remove")
	}
	var ch Change
	err := c.update(ctx, &ch, func(p *Policy) error {
		if ch.Created {
			return fmt.Errorf("%s does not exist; there is no trust to remove: %w", c.PolicyPath(), ErrNoPolicy)
		}
		var si = -1
		if scope != "" {
			if si = p.Find(scope); si < 0 {
				return fmt.Errorf("%s has no scope %q (see `karman trust list`): %w", c.PolicyPath(), scope, ErrInvalid)
			}
		}
		if keyID == "" {
			dropped := p.Scopes[si].Requirement.Keys
			ch.Notes = append(ch.Notes, fmt.Sprintf("removed scope %s (%s)", p.Scopes[si].Name, p.Scopes[si].Requirement))
			p.Scopes = slices.Delete(p.Scopes, si, si+1)
			return c.dropUnused(p, dropped, &ch)
		}
		id, err := c.resolveKeyID(p, keyID)
		if err != nil {
			return err
		}
		if k, err := c.Key(id); err == nil {
			ch.Key = k
		} else {
			ch.Key = signing.Key{ID: id}
		}
		removeFrom := func(name string, r *Requirement) {
			if !slices.Contains(r.Keys, id) {
				return
			}
			r.Keys = slices.DeleteFunc(slices.Clone(r.Keys), func(k string) bool { return k == id })
			if len(r.Keys) == 0 {
				*r = Requirement{Type: Reject}
				ch.Notes = append(ch.Notes, fmt.Sprintf("%s trusted no other key: it now rejects every image", name))
			} else {
				ch.Notes = append(ch.Notes, fmt.Sprintf("%s: %s", name, r))
			}
		}
		if si >= 0 {
			if !slices.Contains(p.Scopes[si].Requirement.Keys, id) {
				return fmt.Errorf("scope %s does not trust key %s: %w", p.Scopes[si].Name, id, ErrUnknownKey)
			}
			removeFrom("scope "+p.Scopes[si].Name, &p.Scopes[si].Requirement)
		} else {
			removeFrom("the default", &p.Default)
			for i := range p.Scopes {
				removeFrom("scope "+p.Scopes[i].Name, &p.Scopes[i].Requirement)
			}
		}
		return c.dropUnused(p, []string{id}, &ch)
	})
	return ch, err
}

// resolveKeyID expands a unique prefix of a key the policy or the store
// knows.
func (c Config) resolveKeyID(p *Policy, prefix string) (string, error) {
	prefix = strings.ToLower(strings.TrimSpace(prefix))
	if prefix == "" {
		return "", fmt.Errorf("empty key ID: %w", ErrUnknownKey)
	}
	known := p.KeyIDs()
	if stored, err := c.StoredKeys(); err == nil {
		for _, k := range stored {
			if !slices.Contains(known, k.ID) {
				known = append(known, k.ID)
			}
		}
	}
	var found []string
	for _, id := range known {
		if strings.HasPrefix(id, prefix) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no trusted key %q (see `karman trust list`): %w", prefix, ErrUnknownKey)
	case 1:
		return found[0], nil
	}
	sort.Strings(found)
	return "", fmt.Errorf("key ID %q matches %d keys; give more digits: %w", prefix, len(found), ErrUnknownKey)
}

// dropUnused removes from the store those of ids the policy no longer
// names.
func (c Config) dropUnused(p *Policy, ids []string, ch *Change) error {
	still := p.KeyIDs()
	for _, id := range ids {
		if slices.Contains(still, id) {
			continue
		}
		if err := os.Remove(c.keyPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		ch.Notes = append(ch.Notes, fmt.Sprintf("removed key %s from %s", id, c.KeysDir()))
	}
	return nil
}

// update runs edit on the policy under the directory's lock and writes the
// result. A missing policy starts as New (reject everything).
func (c Config) update(ctx context.Context, ch *Change, edit func(*Policy) error) error {
	if err := os.MkdirAll(c.KeysDir(), 0o755); err != nil {
		return fmt.Errorf("configuration directory: %w", err)
	}
	lk, err := lockfile.AcquireDir(ctx, c.Dir, true)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	p, err := c.Load()
	if errors.Is(err, ErrNoPolicy) {
		p, err = New(), nil
		ch.Created = true
	}
	if err != nil {
		return err
	}
	if err := edit(p); err != nil {
		return err
	}
	// What is written must read back.
	out := p.Marshal()
	if _, err := Parse(c.PolicyPath(), out); err != nil {
		return fmt.Errorf("internal error, the new policy does not validate: %w", err)
	}
	return writeAtomic(c.PolicyPath(), out, 0o644)
}

func readLimited(path string, limit int64) ([]byte, error) {
	b, err := limitio.ReadFile(path, limit)
	if errors.Is(err, limitio.ErrTooLarge) {
		err = fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return b, err
}

// writeAtomic replaces path with data (internal/atomicfile), unless it
// already holds them.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return atomicfile.WriteFile(path, data, perm)
}

// KeyType describes a key's algorithm and size, as in "ECDSA P-256".
func KeyType(k signing.Key) string {
	switch p := k.Public.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + p.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", p.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k.Public)
}
