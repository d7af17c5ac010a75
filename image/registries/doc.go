// Package registries reads CONFIG-DIR/registries.conf, the registry
// configuration of CRI-O and podman (containers-registries.conf(5),
// version 2), and says where an image is pulled from.
//
// A configuration is a list of [[registry]] entries. The entry whose
// prefix is the longest match of the reference the user gave decides:
// it may block the reference, send it to another location (the rest of
// the reference after the prefix is kept), allow plain HTTP or unverified
// TLS there (insecure), and list mirrors to try first. Resolve turns a
// reference into the ordered list of Endpoints to try; image/fetch tries
// them in that order and uses the first that serves the image's manifest.
//
// What differs from the format's other readers, on purpose:
//
//   - After the mirrors, the primary location is tried only when the entry
//     writes location = "...". An entry with mirrors and a prefix alone
//     uses only its mirrors: when they all fail the pull fails, naming
//     each mirror and why, and nothing is asked of a registry that the
//     file does not name.
//   - A prefix that is a host alone does not match the same host with a
//     port (prefix "example.com" does not cover "example.com:5000/app").
//   - Short names stay refused: unqualified-search-registries,
//     short-name-mode and [aliases] are checked but not used.
//   - Keys karman cannot honour (proxy, credential-helpers, the version 1
//     tables, ...) and a registries.conf.d drop-in directory are refused
//     rather than ignored, as is every unknown key or bad value: the
//     error names the file and the line.
//
// The name an image is known by, the name its signatures are judged
// under, is always the reference the user gave, never an endpoint's: a
// mirror serves bytes, it does not change what is trusted.
package registries
