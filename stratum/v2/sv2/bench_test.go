package sv2

import (
	"testing"
)

// The benchmarks report wire-B/msg, the bytes of one unencrypted frame (header and
// payload; a Noise transport adds its MACs), for comparison with a V1 line.

func benchEncode(b *testing.B, m Message) {
	var buf []byte
	buf, _ = AppendFrame(buf, m)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		if buf, err = AppendFrame(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "wire-B/msg")
}

func benchDecode(b *testing.B, m Message) {
	frame, err := AppendFrame(nil, m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		h, err := ParseHeader(frame)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(h, frame[HeaderSize:]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(frame)), "wire-B/msg")
}

var (
	benchShare = &SubmitSharesStandard{ChannelID: 1, SequenceNumber: 9, JobID: 1, Nonce: 244405, NTime: 1745596932, Version: 0x20000000}
	benchJob   = &NewMiningJob{ChannelID: 1, JobID: 6, MinNTime: Some[uint32](1745596932), Version: 0x20000000, MerkleRoot: hashOf(sriRoot)}
)

func BenchmarkSubmitSharesStandardEncode(b *testing.B) { benchEncode(b, benchShare) }
func BenchmarkSubmitSharesStandardDecode(b *testing.B) { benchDecode(b, benchShare) }
func BenchmarkNewMiningJobEncode(b *testing.B)         { benchEncode(b, benchJob) }
func BenchmarkNewMiningJobDecode(b *testing.B)         { benchDecode(b, benchJob) }

// BenchmarkSubmitSharesStandardDecodeInto decodes into a value the caller owns, as a
// server's read loop can: no allocation.
func BenchmarkSubmitSharesStandardDecodeInto(b *testing.B) {
	frame, _ := AppendFrame(nil, benchShare)
	var m SubmitSharesStandard
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(frame[HeaderSize:]); err != nil {
			b.Fatal(err)
		}
	}
}
