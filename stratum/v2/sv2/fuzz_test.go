package sv2

import (
	"bytes"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

func seedFrames(f *testing.F) {
	for _, c := range msgCases {
		f.Add(c.frame)
		f.Add(c.frame[:len(c.frame)-1])
	}
	f.Add(stream())
}

// canonical returns frame as AppendFrame would write it: the BOOL of a
// NewExtendedMiningJob with its padding bits cleared, since a decoder ignores them.
func canonical(frame []byte, m Message) []byte {
	j, ok := m.(*NewExtendedMiningJob)
	if !ok {
		return frame
	}
	off := HeaderSize + 4 + 4 + 1 + 4 // channel_id, job_id, the OPTION's prefix, version
	if j.MinNTime.Set {
		off += 4
	}
	c := append([]byte(nil), frame...)
	c[off] &= 1
	return c
}

// FuzzDecode decodes a frame header and payload: whatever decodes must encode back to
// the same bytes, and those bytes must decode and encode again unchanged.
func FuzzDecode(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, err := ParseHeader(frame)
		if err != nil {
			return
		}
		m, err := Decode(h, frame[HeaderSize:])
		if err != nil {
			return
		}
		out, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		if want := canonical(frame, m); !bytes.Equal(out, want) {
			t.Fatalf("re-encoded\n got %x\nwant %x", out, want)
		}
		// Compared as bytes, not with reflect.DeepEqual: a NaN nominal_hash_rate
		// is not equal to itself.
		m2, err := Decode(h, out[HeaderSize:])
		if err != nil {
			t.Fatalf("second decode: %v", err)
		}
		if out2, err := AppendFrame(nil, m2); err != nil || !bytes.Equal(out2, out) {
			t.Fatalf("second encode: %x, %v", out2, err)
		}
	})
}

type frameResult struct {
	h       Header
	payload []byte
	err     bool
}

func readAll(r io.Reader, max int) []frameResult {
	fr := NewFrameReader(r, max)
	var out []frameResult
	for {
		h, p, err := fr.Next()
		if err == io.EOF {
			return out
		}
		out = append(out, frameResult{h, append([]byte(nil), p...), err != nil})
		if err != nil {
			return out
		}
	}
}

// FuzzFrameReader reads a stream whole and split in two at any point, byte by byte:
// both readings must find the same frames, and each frame that decodes must encode
// back to its bytes.
func FuzzFrameReader(f *testing.F) {
	for _, c := range msgCases {
		f.Add(c.frame, uint16(3))
	}
	f.Add(stream(), uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		const max = 1 << 12
		whole := readAll(bytes.NewReader(data), max)
		k := int(split) % (len(data) + 1)
		parts := io.MultiReader(bytes.NewReader(data[:k]), iotest.OneByteReader(bytes.NewReader(data[k:])))
		if got := readAll(parts, max); !reflect.DeepEqual(whole, got) {
			t.Fatalf("whole %+v\nsplit at %d %+v", whole, k, got)
		}
		for _, fr := range whole {
			if fr.err {
				continue
			}
			m, err := Decode(fr.h, fr.payload)
			if err != nil {
				continue
			}
			hdr, _ := AppendHeader(nil, fr.h)
			out, err := AppendFrame(nil, m)
			if want := canonical(append(hdr, fr.payload...), m); err != nil || !bytes.Equal(out, want) {
				t.Fatalf("frame %x re-encoded as %x, %v", want, out, err)
			}
		}
	})
}
