package hashgrid

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("bad hex in test: %v", err)
	}
	return b
}

var shareCodecTests = []struct {
	name  string
	share Share
	hex   string
}{
	{
		name:  "zero",
		share: Share{Time: time.Unix(0, 0).UTC()},
		hex: `01 00 00 00 00 00 00 00 00
			0000000000000000000000000000000000000000000000000000000000000000
			00 00 00 00 00`,
	},
	{
		name: "accepted block",
		share: Share{
			Seq:       300,
			Time:      time.Unix(1700000000, 123456789).UTC(),
			Address:   "bcrt1q",
			Worker:    "w1",
			JobID:     "1f",
			Height:    -1,
			Diff:      DiffOne,
			Actual:    MaxDiff,
			Hash:      [32]byte{0: 0xaa, 31: 0xbb},
			Result:    ShareAccepted,
			Block:     true,
			UserAgent: "cpuminer/2.5",
			Remote:    "127.0.0.1:5",
		},
		hex: `01 01 00
			ac02
			80c49fd50c 959aef3a
			01
			8080808010
			ffffffffffffffffff01
			aa000000000000000000000000000000000000000000000000000000000000bb
			06 626372743171
			02 7731
			02 3166
			0c 6370756d696e65722f322e35
			0b 3132372e302e302e313a35`,
	},
	{
		name: "rejected lowdiff before 1970",
		share: Share{
			Seq:    1,
			Time:   time.Unix(-1, 5).UTC(),
			Height: 840000,
			Diff:   1,
			Result: ShareLowDiff,
		},
		hex: `01 00 03 01 01 05 80c566 01 00
			0000000000000000000000000000000000000000000000000000000000000000
			00 00 00 00 00`,
	},
	{
		name: "rejected lowdiff standing for 300 more",
		share: Share{
			Seq:     2,
			Time:    time.Unix(0, 0).UTC(),
			Diff:    1,
			Result:  ShareLowDiff,
			Worker:  "w",
			Repeats: 300,
		},
		hex: `02 00 03 02 00 00 00 01 00
			0000000000000000000000000000000000000000000000000000000000000000
			00 01 77 00 00 00
			ac02`,
	},
	{
		name: "accepted sampled with its header",
		share: Share{
			Seq:    3,
			Time:   time.Unix(0, 0).UTC(),
			Diff:   1,
			Actual: 2,
			Header: &[ShareHeaderSize]byte{0: 0x20, 79: 0x7f},
		},
		hex: `03 00 00 03 00 00 00 01 02
			0000000000000000000000000000000000000000000000000000000000000000
			00 00 00 00 00
			20000000000000000000000000000000000000000000000000000000000000000000000000000000
			0000000000000000000000000000000000000000000000000000000000000000000000000000007f`,
	},
}

func TestShareMarshalBinary(t *testing.T) {
	for _, tt := range shareCodecTests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.hex)
			got, err := tt.share.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("MarshalBinary:\n got %x\nwant %x", got, want)
			}
			var back Share
			if err := back.UnmarshalBinary(want); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if !reflect.DeepEqual(back, tt.share) {
				t.Fatalf("UnmarshalBinary:\n got %+v\nwant %+v", back, tt.share)
			}
		})
	}
}

func TestShareUnmarshalTruncated(t *testing.T) {
	for _, tt := range shareCodecTests {
		full := unhex(t, tt.hex)
		for n := 0; n < len(full); n++ {
			var s Share
			err := s.UnmarshalBinary(full[:n])
			if err == nil {
				t.Fatalf("%s: UnmarshalBinary of first %d of %d bytes: got nil error", tt.name, n, len(full))
			}
			if !errors.Is(err, errShareShort) {
				t.Fatalf("%s: UnmarshalBinary of first %d bytes: got %v, want a truncation error", tt.name, n, err)
			}
			if s != (Share{}) {
				t.Fatalf("%s: UnmarshalBinary wrote %+v on error", tt.name, s)
			}
		}
	}
}

func TestShareUnmarshalErrors(t *testing.T) {
	valid := unhex(t, shareCodecTests[1].hex)
	mutate := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(valid))
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"version", mutate(func(b []byte) []byte { b[0] = 4; return b }), "unsupported version 4"},
		{"version 3 without header", mutate(func(b []byte) []byte { b[0] = 3; return b }), "header: truncated"},
		{"rejected with header", append(mutate(func(b []byte) []byte { b[0], b[2] = 3, 3; return b }), make([]byte, ShareHeaderSize)...), "only an accepted share keeps its header"},
		{"version 2 without repeats", mutate(func(b []byte) []byte { b[0] = 2; return b }), "repeats: truncated"},
		{"zero repeats", append(mutate(func(b []byte) []byte { b[0], b[2] = 2, 3; return b }), 0), "zero repeats"},
		{"accepted with repeats", append(mutate(func(b []byte) []byte { b[0] = 2; return b }), 1), "accepted share cannot stand for repeats"},
		{"flags", mutate(func(b []byte) []byte { b[1] = 0x81; return b }), "unknown flags 0x81"},
		{"result", mutate(func(b []byte) []byte { b[2] = 7; return b }), "unknown result 7"},
		{"trailing", append(bytes.Clone(valid), 0), "1 trailing bytes"},
		{"non-minimal seq", unhex(t, "01 00 00 8000"), "seq: non-minimal varint"},
		{"overflow seq", unhex(t, "01 00 00 ffffffffffffffffff7f"), "seq: varint overflows"},
		{"nanoseconds", unhex(t, "01 00 00 00 00 8094ebdc03"), "nanoseconds 1000000000 out of range"},
		{"address too long", unhex(t, `01 00 00 00 00 00 00 00 00
			0000000000000000000000000000000000000000000000000000000000000000
			8101`), "address: length 129 exceeds limit 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Share
			err := s.UnmarshalBinary(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("UnmarshalBinary(%x): got %v, want error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestShareMarshalLimits(t *testing.T) {
	tests := []struct {
		name  string
		share Share
		want  string
	}{
		{"accepted with repeats", Share{Repeats: 1}, "accepted share cannot stand for repeats"},
		{"rejected with header", Share{Result: ShareStale, Header: new([ShareHeaderSize]byte)}, "only an accepted share keeps its header"},
		{"address", Share{Address: strings.Repeat("a", MaxShareAddressLen+1)}, "address is 129 bytes, limit 128"},
		{"worker", Share{Worker: strings.Repeat("a", MaxShareWorkerLen+1)}, "worker is 129 bytes"},
		{"job id", Share{JobID: strings.Repeat("a", MaxShareJobIDLen+1)}, "job id is 65 bytes"},
		{"user agent", Share{UserAgent: strings.Repeat("a", MaxShareUserAgentLen+1)}, "user agent is 257 bytes"},
		{"remote", Share{Remote: strings.Repeat("a", MaxShareRemoteLen+1)}, "remote is 129 bytes"},
		{"result", Share{Result: ShareInvalid + 1}, "unknown result 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.share.MarshalBinary()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("MarshalBinary: got %v, want error containing %q", err, tt.want)
			}
		})
	}
	at := Share{
		Address: strings.Repeat("a", MaxShareAddressLen), Worker: strings.Repeat("w", MaxShareWorkerLen),
		JobID: strings.Repeat("j", MaxShareJobIDLen), UserAgent: strings.Repeat("u", MaxShareUserAgentLen),
		Remote: strings.Repeat("r", MaxShareRemoteLen), Time: time.Unix(0, 0).UTC(),
	}
	b, err := at.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary at the limits: %v", err)
	}
	var back Share
	if err := back.UnmarshalBinary(b); err != nil || back != at {
		t.Fatalf("round trip at the limits: got %+v, %v", back, err)
	}
}

// TestShareTimeRoundTrip checks times far from 1970 and the zero time, which the
// encoding keeps exactly (in UTC).
func TestShareTimeRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{{}, time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Unix(-62135596801, 1).UTC()} {
		s := Share{Time: tm}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(%v): %v", tm, err)
		}
		var back Share
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(%v): %v", tm, err)
		}
		if back.Time != tm {
			t.Fatalf("time round trip: got %v, want %v", back.Time, tm)
		}
	}
}

func FuzzShareBinary(f *testing.F) {
	for _, tt := range shareCodecTests {
		f.Add(unhex(f, tt.hex))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Share
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		// Every accepted input is canonical: it re-encodes to the same bytes.
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of decoded %+v: %v", s, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, data)
		}
	})
}

func FuzzShareRoundTrip(f *testing.F) {
	f.Add(uint64(300), int64(1700000000), int64(123456789), "bcrt1q", "w1", "1f", int64(-1), uint64(DiffOne), uint64(MaxDiff), []byte{0xaa}, uint8(0), true, "cpuminer", "127.0.0.1:5")
	f.Fuzz(func(t *testing.T, seq uint64, sec, nsec int64, addr, worker, job string, height int64, diff, actual uint64, hash []byte, result uint8, block bool, ua, remote string) {
		s := Share{
			Seq: seq, Time: time.Unix(sec, nsec).UTC(), Address: addr, Worker: worker, JobID: job,
			Height: height, Diff: Diff(diff), Actual: Diff(actual), Result: ShareResult(result),
			Block: block, UserAgent: ua, Remote: remote,
		}
		copy(s.Hash[:], hash)
		b, err := s.MarshalBinary()
		if err != nil {
			if len(addr) <= MaxShareAddressLen && len(worker) <= MaxShareWorkerLen && len(job) <= MaxShareJobIDLen &&
				len(ua) <= MaxShareUserAgentLen && len(remote) <= MaxShareRemoteLen && s.Result <= ShareInvalid {
				t.Fatalf("MarshalBinary(%+v): %v", s, err)
			}
			return
		}
		var back Share
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(%x): %v", b, err)
		}
		if back != s {
			t.Fatalf("round trip:\n got %+v\nwant %+v", back, s)
		}
	})
}
