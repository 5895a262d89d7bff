// Package wasm ships the WebAssembly build of the digit classifier in compute/model,
// the module a compute lease runs: Digits is digits.wasm, built from ./digits by
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -ldflags=-buildid= -o digits.wasm ./digits
//
// TestDigitsBuiltFromSource rebuilds it and fails unless the bytes are the same, so the
// committed module cannot drift from its source or from the weights it embeds; after
// a change to either (or a new Go release), regenerate it with
//
//	go test ./compute/model/wasm -run TestDigitsBuiltFromSource -update
//
// It is committed, not built when needed, because a provider runs what the tenant
// sends, and a demo or test must send the same bytes everywhere. Run with the one
// argument "serve", the module is a service (compute/sandbox's framing): it loads the
// network once and answers each request of digit lines with their classes. What it leaves out:
// running the module (compute/sandbox does that).
package wasm

import _ "embed"

// Digits is the wasip1 module of ./digits.
//
//go:embed digits.wasm
var Digits []byte
