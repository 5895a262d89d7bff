package noise

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fixedStates gives a sender and a receiver on one fixed key, so that seeds sealed with
// it stay valid input from run to run.
func fixedStates(tb testing.TB) (send, recv cipherState) {
	tb.Helper()
	key := bytes.Repeat([]byte{0x11}, 32)
	if err := send.initializeKey(key); err != nil {
		tb.Fatal(err)
	}
	if err := recv.initializeKey(key); err != nil {
		tb.Fatal(err)
	}
	return send, recv
}

func sealFixed(tb testing.TB, h Header, payload []byte) []byte {
	tb.Helper()
	send, _ := fixedStates(tb)
	w := newConn(nil, nil, nil, send, cipherState{}, 0)
	b, err := w.seal(h, payload)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// splitReader hands out its input in two parts, never crossing from one to the other in
// one Read, as two TCP segments would arrive.
type splitReader struct{ parts [][]byte }

func (r *splitReader) Read(p []byte) (int, error) {
	for len(r.parts) > 0 && len(r.parts[0]) == 0 {
		r.parts = r.parts[1:]
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	return n, nil
}

func (r *splitReader) remaining() int {
	n := 0
	for _, p := range r.parts {
		n += len(p)
	}
	return n
}

func newSplitReader(data []byte, split uint) *splitReader {
	at := int(split % uint(len(data)+1))
	return &splitReader{parts: [][]byte{data[:at], data[at:]}}
}

const fuzzMaxPayload = 1 << 18

// FuzzReadFrame feeds arbitrary bytes, in two reads, to the frame decoder. Whatever it
// accepts must be exactly what the encoder makes of the decoded header and payload, and
// it must never hand out more than its limit.
func FuzzReadFrame(f *testing.F) {
	f.Add(sealFixed(f, Header{MsgType: 1}, nil), uint(5))
	f.Add(sealFixed(f, Header{ExtensionType: 0x8001, MsgType: 0x1b, Length: 5}, []byte("hello")), uint(22))
	f.Add(sealFixed(f, Header{MsgType: 2, Length: 70_000}, pattern(70_000)), uint(65_000))
	f.Add(make([]byte, 40), uint(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		_, recv := fixedStates(t)
		r := newSplitReader(data, split)
		h, payload, err := readerConn(r, recv, fuzzMaxPayload).ReadFrame()
		if err != nil {
			if payload != nil {
				t.Fatalf("error %v with %d bytes of payload", err, len(payload))
			}
			return
		}
		if len(payload) > fuzzMaxPayload || int(h.Length) != len(payload) {
			t.Fatalf("header %+v with %d bytes of payload", h, len(payload))
		}
		consumed := data[:len(data)-r.remaining()]
		if again := sealFixed(t, h, payload); !bytes.Equal(again, consumed) {
			t.Fatalf("decoded %+v but it encodes to %x, not the %x read", h, again, consumed)
		}
	})
}

// FuzzFrameTamper seals a frame, changes it by XOR with mask and reads it back in two
// reads: any change must be an error with no payload, no change the frame unchanged.
func FuzzFrameTamper(f *testing.F) {
	f.Add(uint16(0), uint8(0x1c), []byte("submit"), []byte{}, uint(3))
	f.Add(uint16(0x8000), uint8(0x15), pattern(300), []byte{0, 0, 0, 1}, uint(100))
	f.Add(uint16(1), uint8(0), []byte{}, []byte{0x80}, uint(0))
	f.Add(uint16(2), uint8(9), pattern(MaxChunkPayload+10), append(make([]byte, EncryptedHeaderSize+MaxChunk+3), 4), uint(EncryptedHeaderSize+MaxChunk))
	f.Fuzz(func(t *testing.T, ext uint16, typ uint8, payload, mask []byte, split uint) {
		if len(payload) > fuzzMaxPayload {
			payload = payload[:fuzzMaxPayload]
		}
		want := Header{ExtensionType: ext, MsgType: typ, Length: uint32(len(payload))}
		wire := sealFixed(t, want, payload)
		changed := false
		for i := 0; i < len(mask) && i < len(wire); i++ {
			wire[i] ^= mask[i]
			changed = changed || mask[i] != 0
		}
		_, recv := fixedStates(t)
		h, got, err := readerConn(newSplitReader(wire, split), recv, fuzzMaxPayload).ReadFrame()
		if changed {
			if err == nil || got != nil {
				t.Fatalf("changed frame read as %+v with %d bytes, err %v", h, len(got), err)
			}
			return
		}
		if err != nil || h != want || !bytes.Equal(got, payload) {
			t.Fatalf("unchanged frame: %+v, %d bytes, %v", h, len(got), err)
		}
	})
}

var fuzzPKI testPKI

func fuzzIdentity(tb testing.TB) testPKI {
	if fuzzPKI.id == nil {
		fuzzPKI = newPKI(tb)
	}
	return fuzzPKI
}

// FuzzHandshakeMessage1 gives the server arbitrary act-1 bytes. Every 64-byte string is
// some ElligatorSwift key (BIP 324), so the server must answer it; any other length is
// refused.
func FuzzHandshakeMessage1(f *testing.F) {
	f.Add(make([]byte, 64))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Add(unhex(f, bip324Vectors[1].theirs)) // u = p, t = 0
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, m1 []byte) {
		m2, _, _, err := respond(m1, fuzzIdentity(t).id)
		if len(m1) != Message1Size {
			if err == nil {
				t.Fatalf("act 1 of %d bytes accepted", len(m1))
			}
			return
		}
		if err != nil || len(m2) != Message2Size {
			t.Fatalf("act 1 %x: %d bytes back, err %v", m1, len(m2), err)
		}
	})
}

// FuzzHandshakeMessage2 changes a genuine act 2 by XOR with mask: the client must refuse
// it exactly when something changed, and refuse any other bytes of that length.
func FuzzHandshakeMessage2(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte{1}, false)
	f.Add(append(make([]byte, Message2Size-1), 0x40), false)
	f.Add(make([]byte, Message2Size), true)
	f.Fuzz(func(t *testing.T, mask []byte, raw bool) {
		p := fuzzIdentity(t)
		ini, m1, err := newInitiator()
		if err != nil {
			t.Fatal(err)
		}
		m2, _, _, err := respond(m1[:], p.id)
		if err != nil {
			t.Fatal(err)
		}
		changed := false
		if raw {
			// The mask itself, as a whole message.
			m2, changed = mask, true
		} else {
			for i := 0; i < len(mask) && i < len(m2); i++ {
				m2[i] ^= mask[i]
				changed = changed || mask[i] != 0
			}
		}
		hello, err := ini.readMessage2(m2)
		if changed {
			if err == nil {
				t.Fatalf("changed act 2 accepted")
			}
			if len(m2) == Message2Size && !errors.Is(err, ErrAuthentication) {
				t.Fatalf("changed act 2: err %v, want ErrAuthentication", err)
			}
			return
		}
		if err != nil || hello.cert != p.id.Certificate {
			t.Fatalf("genuine act 2: %v", err)
		}
	})
}
