package image

import "time"

// Image is the record of an image in the store: what `image list` and
// `image inspect` show and what a pod is rendered from.
type Image struct {
	// Digest of the platform manifest; the image's identity in the store.
	Digest string `json:"digest"`
	// Names are the references that point at Digest in the refs index.
	Names     []string  `json:"names"`
	MediaType string    `json:"mediaType"`
	Config    string    `json:"config"`
	OS        string    `json:"os"`
	Arch      string    `json:"architecture"`
	Variant   string    `json:"variant,omitempty"`
	Created   time.Time `json:"created,omitzero"`
	// Size is the sum of the compressed layer sizes.
	Size   int64   `json:"size"`
	Layers []Layer `json:"layers"`
}

// Layer is one layer of an image.
type Layer struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}
