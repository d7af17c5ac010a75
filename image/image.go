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
	// Status is StatusOK, or StatusBroken when a blob or an extracted
	// layer of the image is missing or corrupt; Problem then says which
	// and Fix the command that repairs it. A broken image's record holds
	// only what could still be read.
	Status  string `json:"status"`
	Problem string `json:"problem,omitempty"`
	Fix     string `json:"fix,omitempty"`
}

// Image statuses.
const (
	StatusOK     = "ok"
	StatusBroken = "broken"
)

// Layer is one layer of an image.
type Layer struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}
