// Package pow is Bitcoin's proof-of-work arithmetic as mining software needs it:
// 256-bit targets compared as integers, compact nBits, share difficulty (diff1 =
// 0xFFFF·2^208), merkle branches from the coinbase leaf, the 80-byte header, and the
// Stratum form of prevhash. Acceptance decisions use exact integer comparisons; the
// float difficulties are for display and estimates only.
package pow

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
)

// Target is a 256-bit number in four little-endian words (w[3] most significant). A
// header hash, read as a little-endian integer, meets a target when it is not above it.
type Target [4]uint64

// MaxTarget is the largest target: every hash meets it.
var MaxTarget = Target{math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64}

// HashTarget reads a hash (internal byte order) as a little-endian integer.
func HashTarget(h *chainhash.Hash) Target {
	return Target{
		binary.LittleEndian.Uint64(h[0:]),
		binary.LittleEndian.Uint64(h[8:]),
		binary.LittleEndian.Uint64(h[16:]),
		binary.LittleEndian.Uint64(h[24:]),
	}
}

// LE reports t <= u.
func (t Target) LE(u Target) bool {
	for i := 3; i >= 0; i-- {
		if t[i] != u[i] {
			return t[i] < u[i]
		}
	}
	return true
}

// Meets reports whether hash h meets target t.
func Meets(h *chainhash.Hash, t Target) bool { return HashTarget(h).LE(t) }

// Big returns t as a big.Int.
func (t Target) Big() *big.Int {
	b := new(big.Int)
	for i := 3; i >= 0; i-- {
		b.Lsh(b, 64)
		b.Or(b, new(big.Int).SetUint64(t[i]))
	}
	return b
}

// FromBig converts b, saturating at MaxTarget and at zero.
func FromBig(b *big.Int) Target {
	var t Target
	if b.Sign() <= 0 {
		return t
	}
	if b.BitLen() > 256 {
		return MaxTarget
	}
	var buf [32]byte
	b.FillBytes(buf[:])
	for i := 0; i < 4; i++ {
		t[i] = binary.BigEndian.Uint64(buf[24-8*i:])
	}
	return t
}

// Diff1 is the difficulty-1 target, 0xFFFF·2^208.
var Diff1 = new(big.Int).Lsh(big.NewInt(0xFFFF), 208)

var diff1Float = float64(0xFFFF) * math.Exp2(208)

// DiffTarget returns floor(diff1 / d) for a fixed-point difficulty. Difficulty 0 gives
// MaxTarget.
func DiffTarget(d hashgrid.Diff) Target {
	if d == 0 {
		return MaxTarget
	}
	n := new(big.Int).Lsh(Diff1, 32)
	return FromBig(n.Quo(n, new(big.Int).SetUint64(uint64(d))))
}

// CompactTarget expands nBits; a negative or overflowing value is an error.
func CompactTarget(bits uint32) (Target, error) {
	exp := bits >> 24
	mant := bits & 0x007fffff
	if bits&0x00800000 != 0 && mant != 0 {
		return Target{}, fmt.Errorf("pow: negative compact target %08x", bits)
	}
	b := new(big.Int).SetUint64(uint64(mant))
	if exp <= 3 {
		b.Rsh(b, uint(8*(3-exp)))
	} else {
		b.Lsh(b, uint(8*(exp-3)))
	}
	if b.BitLen() > 256 {
		return Target{}, fmt.Errorf("pow: compact target %08x overflows", bits)
	}
	return FromBig(b), nil
}

// Difficulty returns diff1 / t as a float.
func (t Target) Difficulty() float64 {
	v := float64(t[3])*math.Exp2(192) + float64(t[2])*math.Exp2(128) + float64(t[1])*math.Exp2(64) + float64(t[0])
	if v == 0 {
		return math.Inf(1)
	}
	return diff1Float / v
}

// HashDifficulty returns the difficulty a hash meets, diff1 / hash.
func HashDifficulty(h *chainhash.Hash) float64 { return HashTarget(h).Difficulty() }

// DoubleSHA256 is SHA-256 applied twice.
func DoubleSHA256(b []byte) chainhash.Hash {
	h := sha256.Sum256(b)
	return sha256.Sum256(h[:])
}

// HashPair hashes two merkle nodes.
func HashPair(a, b chainhash.Hash) chainhash.Hash {
	var buf [64]byte
	copy(buf[:32], a[:])
	copy(buf[32:], b[:])
	return DoubleSHA256(buf[:])
}

// MerkleBranch returns the hashes a miner folds the coinbase hash with, given the
// other transactions' txids in block order.
func MerkleBranch(txids []chainhash.Hash) []chainhash.Hash {
	var branch []chainhash.Hash
	level := make([]chainhash.Hash, len(txids)+1) // level[0]: the coinbase side
	copy(level[1:], txids)
	for len(level) > 1 {
		branch = append(branch, level[1])
		next := make([]chainhash.Hash, 1, (len(level)+1)/2)
		for i := 2; i < len(level); i += 2 {
			r := level[i]
			if i+1 < len(level) {
				r = level[i+1]
			}
			next = append(next, HashPair(level[i], r))
		}
		level = next
	}
	return branch
}

// MerkleRoot folds a coinbase hash up a branch.
func MerkleRoot(cb chainhash.Hash, branch []chainhash.Hash) chainhash.Hash {
	h := cb
	for _, b := range branch {
		h = HashPair(h, b)
	}
	return h
}

// Header writes an 80-byte block header.
func Header(dst *[80]byte, version uint32, prev, root *chainhash.Hash, ntime, bits, nonce uint32) {
	binary.LittleEndian.PutUint32(dst[0:], version)
	copy(dst[4:36], prev[:])
	copy(dst[36:68], root[:])
	binary.LittleEndian.PutUint32(dst[68:], ntime)
	binary.LittleEndian.PutUint32(dst[72:], bits)
	binary.LittleEndian.PutUint32(dst[76:], nonce)
}

// StratumPrevHash writes prevhash as mining.notify carries it: the 32 internal-order
// bytes with each 4-byte word byte-swapped.
func StratumPrevHash(h chainhash.Hash) string {
	b := swapWords(h)
	return hex.EncodeToString(b[:])
}

// ParseStratumPrevHash reverses StratumPrevHash.
func ParseStratumPrevHash(s string) (chainhash.Hash, error) {
	var h chainhash.Hash
	if len(s) != 64 {
		return h, fmt.Errorf("pow: prevhash of %d hex digits, want 64", len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("pow: prevhash: %w", err)
	}
	return swapWords(h), nil
}

func swapWords(h chainhash.Hash) chainhash.Hash {
	var b chainhash.Hash
	for i := 0; i < 32; i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = h[i+3], h[i+2], h[i+1], h[i]
	}
	return b
}
