// Package sv2 is the binary codec of Stratum V2 as the stratum-mining/sv2-spec
// repository defines it (chapters 3, "Protocol Overview", and 5, "Mining Protocol",
// with the message numbers of chapter 8; checked against spec commit 0f38d51): the
// data types, the six-byte frame header, the Common Protocol messages and every Mining
// Protocol message, each with a symmetric Encode and Decode, plus the arithmetic a
// pool needs to check a V2 share with the proof-of-work code hashgrid already has
// (package pow): U256 targets as pow.Target and hashgrid.Diff, the merkle root of an
// extended job and the 80-byte header a share commits to.
//
// Decoding is strict, since a pool decodes what any peer sends: a payload that ends
// early, carries bytes after its last field, exceeds a type's length limit or holds an
// OPTION prefix other than 0 or 1 is an error naming the message and the byte offset.
// Decoded messages own their memory, so a frame buffer can be reused at once.
// FrameReader bounds every payload by a limit its caller names and by the largest
// payload the message type can have (MaxLen), before reading it.
//
// Left out: the Noise encryption of the transport (package stratum/v2/noise), the Job
// Declaration and Template Distribution protocols, protocol extensions and their TLV
// fields (extension 0x0001 negotiates them, and without it a peer must not send any:
// trailing bytes are an error), and every protocol decision (which flags to accept,
// which targets to set, what to answer): those belong to the pool's V2 server.
package sv2
