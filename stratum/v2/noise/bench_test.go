package noise

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// BenchmarkHandshake is one whole handshake, both sides, over net.Pipe: what a pool pays
// in CPU per connecting miner (and the miner its half).
func BenchmarkHandshake(b *testing.B) {
	p := newPKI(b)
	for b.Loop() {
		sc, cc := net.Pipe()
		_, _, serr, cerr := handshake(b, sc, cc, p.server(), p.client())
		if serr != nil || cerr != nil {
			b.Fatal(serr, cerr)
		}
		sc.Close()
		cc.Close()
	}
}

// BenchmarkFrameRoundTrip seals and opens a 100-byte frame, about a SubmitSharesExtended.
func BenchmarkFrameRoundTrip(b *testing.B) {
	send, recv := fixedStates(b)
	w := newConn(nil, nil, nil, send, cipherState{}, 0)
	var buf bytes.Buffer
	w.w = &buf
	r := readerConn(&buf, recv, DefaultMaxPayload)
	payload := pattern(100)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := w.WriteFrame(0x8000, 0x1b, payload); err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
	if buf.Len() != 0 {
		b.Fatal(io.ErrShortBuffer)
	}
}
