package pool

import (
	"fmt"
	"math/bits"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
)

// Share sampling. The pool keeps the 80-byte header (hashgrid.Share.Header) of every
// accepted share whose hash also meets its own target divided by the sample rate: one
// share in SampleRate on average, and which ones is decided by the proof of work alone,
// so neither the pool nor its operator can choose them. Anyone holding a sampled header
// can hash it again, check it meets the share's difficulty and find the hash among the
// shares a report commits to (package registry). The rate is a power of two, so that
// the sample target is the share target shifted right, exactly.

// DefaultSampleRate is the sample rate on every network but regtest and simnet: some
// 80 bytes stored per 1,024 accepted shares.
const DefaultSampleRate = 1024

// NetworkSampleRate is Config.SampleRate's default on net: every share on regtest and
// simnet, whose few test shares are all worth keeping, DefaultSampleRate elsewhere.
func NetworkSampleRate(net *chaincfg.Params) uint64 {
	if net != nil && (net.Net == wire.TestNet || net.Net == wire.SimNet) {
		return 1
	}
	return DefaultSampleRate
}

// MaxSampleLevel is the log2 of the largest sample rate, 2^62.
const MaxSampleLevel = 62

// checkSampleRate accepts powers of two from 1 to 2^MaxSampleLevel.
func checkSampleRate(rate uint64) error {
	if rate == 0 || rate&(rate-1) != 0 || rate > 1<<MaxSampleLevel {
		return fmt.Errorf("pool: sample rate %d is not a power of two in 1..2^62", rate)
	}
	return nil
}

// SampleTarget returns the target a share of difficulty d must meet to be sampled at
// rate, a power of two: the share's target, floor(diff1/d), shifted right by log2(rate).
func SampleTarget(d hashgrid.Diff, rate uint64) (pow.Target, error) {
	if err := checkSampleRate(rate); err != nil {
		return pow.Target{}, err
	}
	return shiftTarget(pow.DiffTarget(d), uint(bits.TrailingZeros64(rate))), nil
}

// Sampled reports whether a share of difficulty d whose header hashes to h is in the
// sample at rate.
func Sampled(h *chainhash.Hash, d hashgrid.Diff, rate uint64) (bool, error) {
	t, err := SampleTarget(d, rate)
	if err != nil {
		return false, err
	}
	return pow.Meets(h, t), nil
}

// SampleLevel returns the largest k, at most MaxSampleLevel, for which a share whose
// header hashes to h is in the sample at rate 2^k, given the share's target t
// (pow.DiffTarget of its difficulty); -1 when h does not meet t at all. Half the shares
// are at level 0, a quarter at 1, and so on: a reader of many shares finds, with one
// call each, at which rates each would be sampled.
func SampleLevel(h *chainhash.Hash, t pow.Target) int {
	ht := pow.HashTarget(h)
	if !ht.LE(t) {
		return -1
	}
	k := 0
	for k < MaxSampleLevel && ht.LE(shiftTarget(t, uint(k+1))) {
		k++
	}
	return k
}

// shiftTarget returns t >> n.
func shiftTarget(t pow.Target, n uint) pow.Target {
	words, rest := n/64, n%64
	var out pow.Target
	for i := range out {
		j := uint(i) + words
		if j >= uint(len(t)) {
			break
		}
		out[i] = t[j] >> rest
		if rest != 0 && j+1 < uint(len(t)) {
			out[i] |= t[j+1] << (64 - rest)
		}
	}
	return out
}
