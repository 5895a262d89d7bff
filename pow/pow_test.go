package pow

import (
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
)

func TestCompactTarget(t *testing.T) {
	tests := []struct {
		bits uint32
		hex  string // big-endian, 64 digits
	}{
		{0x1d00ffff, "00000000ffff0000000000000000000000000000000000000000000000000000"},
		{0x207fffff, "7fffff0000000000000000000000000000000000000000000000000000000000"},
		{0x1729d72d, "00000000000000000029d72d0000000000000000000000000000000000000000"},
		{0x03123456, "0000000000000000000000000000000000000000000000000000000000123456"},
		{0x02123456, "0000000000000000000000000000000000000000000000000000000000001234"},
		{0x21007fff, "7fff000000000000000000000000000000000000000000000000000000000000"},
		{0x01003456, "0000000000000000000000000000000000000000000000000000000000000000"},
	}
	for _, tt := range tests {
		got, err := CompactTarget(tt.bits)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := new(big.Int).SetString(tt.hex, 16)
		if got.Big().Cmp(want) != 0 {
			t.Errorf("CompactTarget(%08x) = %x, want %s", tt.bits, got.Big(), tt.hex)
		}
	}
	// Negative (sign bit with a mantissa) and overflowing values are errors.
	for _, bad := range []uint32{0x1d80ffff, 0x23ffffff} {
		if _, err := CompactTarget(bad); err == nil {
			t.Errorf("CompactTarget(%08x) accepted", bad)
		}
	}
}

func TestDiffTarget(t *testing.T) {
	one, _ := CompactTarget(0x1d00ffff)
	if DiffTarget(hashgrid.DiffOne) != one {
		t.Error("difficulty 1 is not 0x1d00ffff")
	}
	if d := one.Difficulty(); d != 1 {
		t.Errorf("Difficulty of diff1 target = %g", d)
	}
	if DiffTarget(0) != MaxTarget {
		t.Error("difficulty 0 is not the largest target")
	}
	// Higher difficulty, smaller target, for a spread of values.
	prev := MaxTarget
	for _, d := range []float64{1e-6, 0.001, 0.5, 1, 2, 1024, 65536, 4e9} {
		tg := DiffTarget(hashgrid.DiffFromFloat(d))
		if !tg.LE(prev) || tg == prev {
			t.Errorf("target of difficulty %g not below the previous one", d)
		}
		// The target encodes the fixed-point difficulty, which rounds d to 2^-32.
		want := hashgrid.DiffFromFloat(d).Float()
		if got := tg.Difficulty(); got/want < 0.999999 || got/want > 1.000001 {
			t.Errorf("Difficulty(DiffTarget(%g)) = %g, want %g", d, got, want)
		}
		prev = tg
	}
}

func TestMeetsUsesLittleEndian(t *testing.T) {
	// A hash whose last byte (most significant) is 1 is above a target of 2^248 - 1.
	var h chainhash.Hash
	h[31] = 1
	tgt := FromBig(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 248), big.NewInt(1)))
	if Meets(&h, tgt) {
		t.Error("hash 2^248 meets target 2^248-1")
	}
	h[31], h[0] = 0, 0xff
	if !Meets(&h, tgt) {
		t.Error("hash 255 does not meet target 2^248-1")
	}
}

func FuzzTargetRoundTrip(f *testing.F) {
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 32 {
			b = b[:32]
		}
		v := new(big.Int).SetBytes(b)
		if got := FromBig(v).Big(); got.Cmp(v) != 0 {
			t.Fatalf("round trip of %x gave %x", v, got)
		}
	})
}

func FuzzPrevHashRoundTrip(f *testing.F) {
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h chainhash.Hash
		copy(h[:], b)
		s := StratumPrevHash(h)
		back, err := ParseStratumPrevHash(s)
		if err != nil || back != h {
			t.Fatalf("%x -> %s -> %x (%v)", h, s, back, err)
		}
		if _, err := ParseStratumPrevHash(s[:62] + "zz"); err == nil {
			t.Fatal("non-hex prevhash accepted")
		}
		_ = hex.EncodeToString
	})
}
