// Package strictjson checks that a JSON document is read the same way by
// every parser: one value, bounded nesting, and no object with two members
// whose names are equal or differ only in case. encoding/json matches
// member names to struct fields case-insensitively and keeps the last of
// duplicates, so a document that fails the check could mean one thing to
// Karman and another to the program that wrote or relayed it. Signature
// payloads and bundles (signing/cosign) and the node agent's request
// bodies (agentapi/server) are checked before they are decoded.
package strictjson
