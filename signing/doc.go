// Package signing owns the trust policy, the key store and cosign-compatible
// signature verification. The image layer consults it after resolving a
// manifest digest and before fetching any config or layer blob.
package signing
