// Package hashgrid holds the domain types that every part of hashgrid shares: shares,
// blocks, workers and the fixed-point units they are counted in, plus the storage
// interfaces the pool, payouts, API and registry consume.
//
// Subpackages are named after what they adapt or implement: stratum (the wire protocol),
// node (bitcoind/btcd JSON-RPC), pool (jobs, share validation, vardiff), sqlite (storage),
// stream (the durable share log), power (energy-aware fleet control), registry (declared
// workloads and signed evidence), cli (the subcommands of the one hashgrid binary).
//
// Money is counted in satoshis (int64) and work in Diff, a fixed-point difficulty; neither
// is ever a float in stored or paid amounts.
package hashgrid

import (
	"math"
	"math/big"
	"strconv"
)

// Diff is a share difficulty in fixed point with 32 fractional bits: DiffOne is
// difficulty 1 (about 2^32 hashes of work). The smallest step, 2^-32, is far below the
// 0.0001 that the smallest devices ask for; the largest value is about 4.29e9, above any
// per-share difficulty a pool hands out. Sums of many shares can exceed 64 bits: use
// Work for those.
type Diff uint64

// DiffOne is difficulty 1.
const DiffOne Diff = 1 << 32

// MaxDiff is the largest representable difficulty.
const MaxDiff Diff = math.MaxUint64

// DiffFromFloat converts a float difficulty (as sent on the wire) to fixed point,
// rounding to nearest and saturating at the ends. NaN and negative values give 0.
func DiffFromFloat(f float64) Diff {
	if !(f > 0) {
		return 0
	}
	v := f * float64(DiffOne)
	if v >= float64(math.MaxUint64) {
		return MaxDiff
	}
	return Diff(math.Round(v))
}

// Float returns the difficulty as a float64, for the wire and for display only.
func (d Diff) Float() float64 { return float64(d) / float64(DiffOne) }

// String formats the difficulty with enough digits to round-trip small values.
func (d Diff) String() string { return strconv.FormatFloat(d.Float(), 'g', 10, 64) }

// Work is an exact sum of Diff values (difficulty-weighted share units with 32
// fractional bits). It is a 128-bit unsigned integer held as two words.
type Work struct{ Hi, Lo uint64 }

// Add returns w + d.
func (w Work) Add(d Diff) Work {
	lo := w.Lo + uint64(d)
	hi := w.Hi
	if lo < w.Lo {
		hi++
	}
	return Work{hi, lo}
}

// Plus returns w + v.
func (w Work) Plus(v Work) Work {
	lo := w.Lo + v.Lo
	hi := w.Hi + v.Hi
	if lo < w.Lo {
		hi++
	}
	return Work{hi, lo}
}

// Big returns w as a big.Int.
func (w Work) Big() *big.Int {
	b := new(big.Int).SetUint64(w.Hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(w.Lo))
}

// Float returns w in difficulty-1 units as a float64, for display and rates only.
func (w Work) Float() float64 {
	return (float64(w.Hi)*math.Exp2(64) + float64(w.Lo)) / float64(DiffOne)
}

// Hashes returns the expected number of hashes behind w: difficulty · 2^32.
func (w Work) Hashes() float64 { return w.Float() * math.Exp2(32) }
