// Package image owns what Karman knows about container images: references
// (registry names, OCI layouts, docker archives), the record of a stored
// image, and the error classes every image operation reports.
//
// The work is done in subpackages, one job each:
//
//   - image/store keeps blobs by digest, extracted layers, the refs index and
//     leases, and collects garbage;
//   - image/layer extracts one layer, treating it as hostile input;
//   - image/fetch brings an image from a registry, an OCI layout or a docker
//     archive into the store, verifying every blob before it is committed;
//   - image/rootfs renders a pod's root filesystem from stored layers.
//
// The order of a fetch is fixed: resolve the reference once, compute the
// manifest digest locally, let the verifier (package signing) judge that
// digest, and only then fetch config and layers by digest.
package image
