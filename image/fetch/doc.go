// Package fetch brings images into the store from a registry, an OCI image
// layout or a docker archive.
//
// Every source is reduced to two calls, "give me this manifest" and "give me
// this blob", and one pipeline does the rest in a fixed order: resolve the
// reference once, pick the host platform from an index, compute the
// manifest digest locally, validate the manifest strictly, call the
// verifier with that digest, and only then fetch the config and the layers
// by digest. Layers download in parallel and are extracted while they
// stream; the store commits each one only if its digest and size match.
// The manifest is committed last, so an interrupted fetch leaves nothing
// that looks complete.
package fetch
