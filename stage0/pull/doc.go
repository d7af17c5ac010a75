// Package pull fetches images for stage0 in the calling process: the
// registry client (image/fetch) under the trust policy (signing/policy),
// as stage0.Fetcher (Local) and as fetch hooks (VerifyImages). stage0
// itself links neither, so that the lean karman, which runs pods without
// them, starts faster; it has karman-full fetch instead. The complete
// karman and the node agent use this package.
package pull
