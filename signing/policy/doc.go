// Package policy owns Karman's trust policy: the versioned policy.json of
// a configuration directory, the store of trusted public keys beside it,
// and the Verifier that applies both to an image.
//
// policy.json maps scopes to requirements and has a default, reject when
// omitted:
//
//	{
//	  "version": 1,
//	  "default": {"type": "reject"},
//	  "scopes": {
//	    "127.0.0.1:5000/team": {"type": "signed", "keys": ["3f2a…"]},
//	    "oci:/srv/images": {"type": "insecure-accept-anything"}
//	  }
//	}
//
// A scope is a registry, a repository prefix, oci:/DIR or
// docker-archive:/FILE; it covers an image when it equals the image's
// scope or is a prefix of it ending at a path component boundary, and the
// most specific covering scope decides. Keys are named by ID, the hex
// SHA-256 of their PKIX DER encoding, and live in keys/<id>.pub.
//
// The life of a check: the image layer resolves a reference to a digest
// (never fetching config or layers first), stage0 or the CLI builds a
// Verifier with NewVerifier and calls Check with that digest and the
// image's signature source; Check returns a Decision, and a
// *RefusedError (signing.ErrRefused) when the image may not come in.
// Parsing is strict: unknown or repeated fields, a version other than 1,
// unknown requirement types and malformed key IDs are errors naming the
// line and column; a missing policy.json refuses everything.
package policy
