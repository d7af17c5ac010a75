// Package fetch brings images into the store from a registry, an OCI image
// layout or a docker archive.
//
// Every source is reduced to two calls, "give me this manifest" and "give me
// this blob", and one pipeline does the rest in a fixed order: resolve the
// reference once, compute the digest of what it names (an index or a
// manifest) locally, call the verifier with that digest and the image's
// signature source, then pick the host platform's manifest by digest from
// the verified index bytes, validate the manifest strictly, and only then
// fetch the config and the layers by digest. Layers download in parallel
// and are extracted while they stream; the store commits each one only if
// its digest and size match. The manifest is committed last, so an
// interrupted fetch leaves nothing that looks complete.
//
// The verifier is Options.Verify; when it is nil nothing is verified. The
// trust decision belongs to the callers: stage0 and the CLI install the
// signature policy (signing/policy), while tests and tools that read
// images they built themselves leave it out. Check runs the pipeline up to
// the verifier only (`karman verify`).
package fetch
