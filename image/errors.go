package image

import "errors"

// Error classes. Callers test them with errors.Is; messages add the context
// and the fix.
var (
	// ErrNotFound: no such image, reference, tag or blob.
	ErrNotFound = errors.New("not found")
	// ErrInvalidReference: the image reference cannot be parsed.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrUnsupported: a media type, manifest schema or layer kind Karman
	// does not handle.
	ErrUnsupported = errors.New("unsupported")
	// ErrDigestMismatch: content does not match the digest or size that
	// names it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrBroken: a stored image cannot be used because one of its blobs or
	// extracted layers is missing or corrupt.
	ErrBroken = errors.New("broken image")
	// ErrUnauthorized: the registry refused our credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnreachable: the registry could not be contacted.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrInsecure: the operation needs an --insecure-options flag.
	ErrInsecure = errors.New("refused as insecure")
	// ErrInUse: the store is busy with another operation.
	ErrInUse = errors.New("in use")
)
