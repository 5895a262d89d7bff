package sandbox

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
	"time"
)

func frameBytes(tb testing.TB, s Spec, cacheDir string) []byte {
	tb.Helper()
	r, err := encodeRequest(s, cacheDir)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sameSpec compares specs, taking a nil and an empty slice or map as the same.
func sameSpec(a, b Spec) bool {
	norm := func(s Spec) Spec {
		if len(s.Stdin) == 0 {
			s.Stdin = nil
		}
		if len(s.Module) == 0 {
			s.Module = nil
		}
		if len(s.Inputs) == 0 {
			s.Inputs = nil
		}
		for k, v := range s.Inputs {
			if len(v) == 0 {
				s.Inputs[k] = nil
			}
		}
		return s
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestFrameRoundTrip(t *testing.T) {
	specs := []Spec{
		{Module: []byte("\x00asm"), Args: []string{"/in/a", "x y"}, Stdin: []byte("in\n"),
			Inputs:      map[string][]byte{"b": []byte("bee"), "a": []byte("ay"), "empty": {}},
			MemoryLimit: 1 << 20, CPULimit: 3 * time.Second, Timeout: time.Minute, MaxOutput: 99},
		{Module: []byte{1}},
	}
	for _, s := range specs {
		b := frameBytes(t, s, "/cache")
		// One byte per read: a pipe may deliver the frame in any pieces.
		got, dir, err := decodeRequest(iotest.OneByteReader(bytes.NewReader(b)))
		if err != nil || dir != "/cache" || !sameSpec(got, s) {
			t.Errorf("round trip of %+v: %+v, %q, %v", s, got, dir, err)
		}
		// Every truncation fails, and so does a byte too many.
		for i := 0; i < len(b); i++ {
			if _, _, err := decodeRequest(bytes.NewReader(b[:i])); err == nil {
				t.Fatalf("a frame cut at %d of %d bytes decoded", i, len(b))
			}
		}
		if _, _, err := decodeRequest(bytes.NewReader(append(b, 0))); err == nil {
			t.Error("a frame with a byte too many decoded")
		}
	}
}

func TestFrameLimits(t *testing.T) {
	header := func(js string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(js))), js...)
	}
	for _, b := range [][]byte{
		binary.BigEndian.AppendUint32(nil, maxHeader+1),
		header(`{"ModuleSize": 67108865}`),
		header(`{"ModuleSize": -1}`),
		header(`{"StdinSize": -1}`),
		header(`{"StdinSize": 268435457}`),
		header(`{"Inputs": [{"Name": "a", "Size": 200000000}, {"Name": "b", "Size": 200000000}]}`),
		header(`{"Inputs": [{"Name": "a", "Size": 0}, {"Name": "a", "Size": 0}]}`),
		header(`not json`),
	} {
		if _, _, err := decodeRequest(bytes.NewReader(b)); err == nil {
			t.Errorf("decoded %q", b)
		}
	}
}

// FuzzDecodeRequest checks that any bytes decode or fail without panicking, and that
// what decodes encodes back to the same frame.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(frameBytes(f, Spec{Module: []byte("m"), Stdin: []byte("s"), Inputs: map[string][]byte{"a": []byte("x")}}, ""))
	f.Add(frameBytes(f, Spec{Module: []byte("m"), Args: []string{"1"}}, "/c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, dir, err := decodeRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		again, dir2, err := decodeRequest(bytes.NewReader(frameBytes(t, s, dir)))
		if err != nil || dir2 != dir || !sameSpec(again, s) {
			t.Fatalf("re-encoding %+v: %+v, %v", s, again, err)
		}
	})
}
