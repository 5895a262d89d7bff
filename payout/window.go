package payout

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
)

// Hash32 is a 32-byte hash shown as hex (in the byte order it is stored in).
type Hash32 [32]byte

// MarshalText implements encoding.TextMarshaler.
func (h Hash32) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h[:])), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash32) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("payout: hash must be 64 hex digits, got %d", len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

func (h Hash32) String() string { return hex.EncodeToString(h[:]) }

// WindowShare is one share of a PPLNS window as published: Weight is what the share
// counts for, its full difficulty except for the oldest share, which is cut so that the
// window holds exactly its size.
type WindowShare struct {
	Seq     uint64        `json:"seq"`
	Address string        `json:"address"`
	Diff    hashgrid.Diff `json:"diff"`   // assigned difficulty, fixed point (2^32 = 1)
	Weight  hashgrid.Diff `json:"weight"` // counted weight, fixed point
	Hash    Hash32        `json:"hash"`   // share's block header hash, internal byte order
}

// maxAddressLen bounds an address in a leaf (longest bech32 addresses are 90).
const maxAddressLen = 100

// Leaf returns the share's Merkle leaf in a version 1 window: SHA-256d over a tag and
// its fields, its counted weight among them.
func (s WindowShare) Leaf() Hash32 {
	var b [8 + 3*8 + 32 + 1 + maxAddressLen]byte
	buf := append(b[:0], "hgwleaf1"...)
	buf = binary.BigEndian.AppendUint64(buf, s.Seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Diff))
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Weight))
	buf = append(buf, s.Hash[:]...)
	a := s.Address
	if len(a) > maxAddressLen {
		a = a[:maxAddressLen]
	}
	buf = append(buf, byte(len(a)))
	buf = append(buf, a...)
	return sha256d(buf)
}

// LeafV2 returns the share's Merkle leaf in a version 2 window: SHA-256d over a tag
// and the fields the share has from the moment it is accepted. The weight is left out:
// it is the share's difficulty except for the window's oldest share, whose cut weight
// the window's parameters carry (First), so a leaf never changes once hashed.
func (s WindowShare) LeafV2() Hash32 {
	var b [8 + 2*8 + 32 + 1 + maxAddressLen]byte
	buf := append(b[:0], "hgwleaf2"...)
	buf = binary.BigEndian.AppendUint64(buf, s.Seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Diff))
	buf = append(buf, s.Hash[:]...)
	a := s.Address
	if len(a) > maxAddressLen {
		a = a[:maxAddressLen]
	}
	buf = append(buf, byte(len(a)))
	buf = append(buf, a...)
	return sha256d(buf)
}

func sha256d(b []byte) Hash32 {
	h := sha256.Sum256(b)
	return sha256.Sum256(h[:])
}

// MerkleRoot returns the root over leaves: pairs hashed with SHA-256d, an odd node
// carried up unchanged (not duplicated, so no two leaf lists share a root). It works in
// place on leaves. The root of no leaves is all zeros.
func MerkleRoot(leaves []Hash32) Hash32 {
	if len(leaves) == 0 {
		return Hash32{}
	}
	var pair [64]byte
	n := len(leaves)
	for n > 1 {
		m := 0
		for i := 0; i < n; i += 2 {
			if i+1 == n {
				leaves[m] = leaves[i]
			} else {
				copy(pair[:32], leaves[i][:])
				copy(pair[32:], leaves[i+1][:])
				leaves[m] = sha256d(pair[:])
			}
			m++
		}
		n = m
	}
	return leaves[0]
}

// hashPair returns SHA-256d(l || r), an inner node of a Merkle tree.
func hashPair(l, r *Hash32) Hash32 {
	var pair [64]byte
	copy(pair[:32], l[:])
	copy(pair[32:], r[:])
	return sha256d(pair[:])
}

// AlignedRoot returns the root of a version 2 window: leaves[i] sits at position
// base+i of a binary tree over all 64-bit positions, in which node j of level k covers
// positions j·2^k to (j+1)·2^k − 1. A node over no leaf is empty; a node with one empty
// child is its other child, carried up unchanged; a node with two is SHA-256d of the
// left child then the right. The root is the value of the top node, which is that of
// the lowest node covering every leaf. With base 0 it equals MerkleRoot. Because the
// tree is fixed by absolute positions, the root of a window that slid forward reuses
// every node wholly inside both windows: the live window keeps them. It works in place
// on leaves; the root of no leaves is all zeros. base+len(leaves)−1 must not overflow.
func AlignedRoot(base uint64, leaves []Hash32) Hash32 {
	if len(leaves) == 0 {
		return Hash32{}
	}
	n := len(leaves)
	for n > 1 {
		m, i := 0, 0
		if base&1 == 1 {
			// The first node is a right child whose left sibling is outside.
			m, i = 1, 1
		}
		for ; i < n; i += 2 {
			if i+1 == n {
				leaves[m] = leaves[i]
			} else {
				leaves[m] = hashPair(&leaves[i], &leaves[i+1])
			}
			m++
		}
		n, base = m, base>>1
	}
	return leaves[0]
}

// Window commitment formats; see the package doc. A window whose parameters carry no
// version is version 1.
const (
	// WindowV1 leaves carry each share's counted weight; the tree pairs leaves from the
	// window's oldest share (MerkleRoot). Windows committed before version 2 keep it.
	WindowV1 = 1
	// WindowV2 leaves carry no weight (LeafV2); the tree is aligned on the positions
	// Base+i (AlignedRoot), so that a pool can keep the nodes a sliding window shares.
	WindowV2 = 2
	// WindowVersion is the format the pool commits to.
	WindowVersion = WindowV2
)

// WindowParams is everything a PPLNS block's split depends on besides its reward; its
// hash is the commitment placed in the coinbase.
type WindowParams struct {
	Version   int           `json:"version,omitempty"` // commitment format: 0 or 1 (WindowV1), WindowV2
	N         hashgrid.Diff `json:"n"`                 // window as a multiple of network difficulty, fixed point
	Bits      uint32        `json:"bits"`              // network target the window was sized for
	Size      WorkJSON      `json:"size"`              // floor(N·diff1/target), Diff units
	FeeBps    int64         `json:"fee_bps"`           // pool fee
	DirectMin int64         `json:"direct_min_sat"`
	MaxDirect int           `json:"max_direct"`
	Start     uint64        `json:"start_seq"`      // oldest share (0 when empty)
	End       uint64        `json:"end_seq"`        // newest share
	Count     uint64        `json:"count"`          // shares in the window
	First     hashgrid.Diff `json:"first_weight"`   // counted weight of the oldest share
	Total     WorkJSON      `json:"total"`          // sum of weights: Size, or less for a short window
	Root      Hash32        `json:"root"`           // Merkle root of the shares' leaves, oldest first
	Base      uint64        `json:"base,omitempty"` // version 2: tree position of the oldest share
}

// SplitParams returns the split parameters the window commits to.
func (p WindowParams) SplitParams() SplitParams {
	return SplitParams{FeeBps: p.FeeBps, DirectMin: p.DirectMin, MaxDirect: p.MaxDirect}
}

// Commitment returns the hash of the parameters: SHA-256d over a tag naming the
// format ("hgwwin01" for version 0 and 1, "hgwwin02" for version 2), the fields as
// 64-bit big-endian integers in the order they are declared (Size and Total high half
// first; Version left out, its tag says it; Base, after Total, only in version 2),
// then Root. An unknown version hashes under a tag of its own with the version after
// it, so it matches no window of a known version.
func (p WindowParams) Commitment() Hash32 {
	buf := make([]byte, 0, 8+16*8+32)
	switch p.Version {
	case 0, WindowV1:
		buf = append(buf, "hgwwin01"...)
	case WindowV2:
		buf = append(buf, "hgwwin02"...)
	default:
		buf = binary.BigEndian.AppendUint64(append(buf, "hgwwin??"...), uint64(p.Version))
	}
	for _, v := range []uint64{uint64(p.N), uint64(p.Bits), p.Size.Hi, p.Size.Lo, uint64(p.FeeBps), uint64(p.DirectMin),
		uint64(p.MaxDirect), p.Start, p.End, p.Count, uint64(p.First), p.Total.Hi, p.Total.Lo} {
		buf = binary.BigEndian.AppendUint64(buf, v)
	}
	if p.Version != 0 && p.Version != WindowV1 {
		buf = binary.BigEndian.AppendUint64(buf, p.Base)
	}
	buf = append(buf, p.Root[:]...)
	return sha256d(buf)
}

// WorkJSON is a hashgrid.Work that travels as a decimal string (it may exceed 64 bits).
type WorkJSON hashgrid.Work

// MarshalText implements encoding.TextMarshaler.
func (w WorkJSON) MarshalText() ([]byte, error) { return []byte(hashgrid.Work(w).Big().String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (w *WorkJSON) UnmarshalText(b []byte) error {
	v, ok := new(big.Int).SetString(string(b), 10)
	if !ok || v.Sign() < 0 || v.BitLen() > 128 {
		return fmt.Errorf("payout: bad work %q", b)
	}
	*w = WorkJSON(workFromBig(v))
	return nil
}

func workFromBig(v *big.Int) hashgrid.Work {
	lo := new(big.Int).And(v, new(big.Int).SetUint64(^uint64(0)))
	hi := new(big.Int).Rsh(v, 64)
	return hashgrid.Work{Hi: hi.Uint64(), Lo: lo.Uint64()}
}

// WindowSize returns N·(network difficulty) in Diff units: floor(N·diff1/target),
// computed exactly from the compact target.
func WindowSize(n hashgrid.Diff, bits uint32) (hashgrid.Work, error) {
	t, err := pow.CompactTarget(bits)
	if err != nil {
		return hashgrid.Work{}, err
	}
	tb := t.Big()
	if tb.Sign() == 0 {
		return hashgrid.Work{}, errors.New("payout: zero network target")
	}
	v := new(big.Int).Mul(new(big.Int).SetUint64(uint64(n)), pow.Diff1)
	v.Quo(v, tb)
	if v.BitLen() > 128 {
		return hashgrid.Work{}, fmt.Errorf("payout: window %s·difficulty of bits %08x does not fit 128 bits", n, bits)
	}
	return workFromBig(v), nil
}

// workSub returns a − b for a ≥ b.
func workSub(a, b hashgrid.Work) hashgrid.Work {
	lo := a.Lo - b.Lo
	hi := a.Hi - b.Hi
	if a.Lo < b.Lo {
		hi--
	}
	return hashgrid.Work{Hi: hi, Lo: lo}
}

func workLess(a, b hashgrid.Work) bool { return a.Hi < b.Hi || (a.Hi == b.Hi && a.Lo < b.Lo) }

func diffWork(d hashgrid.Diff) hashgrid.Work { return hashgrid.Work{Lo: uint64(d)} }

// CutWindow takes shares (oldest first, accepted only) ending with the newest share of
// the window and returns the window of the given size: the newest shares whose
// difficulties add up to size, the oldest of them cut to fit. When the shares do not
// reach size, all of them are the window (a short window).
func CutWindow(shares []WindowShare, size hashgrid.Work) []WindowShare {
	var acc hashgrid.Work
	i := len(shares)
	for i > 0 && workLess(acc, size) {
		i--
		acc = acc.Add(shares[i].Diff)
	}
	w := shares[i:]
	for j := range w {
		w[j].Weight = w[j].Diff
	}
	if len(w) > 0 && workLess(size, acc) {
		// acc − size < Diff of the oldest share: the cut weight fits a Diff.
		over := workSub(acc, size)
		w[0].Weight = w[0].Diff - hashgrid.Diff(over.Lo)
	}
	return w
}

// Window is a cut window with its parameters.
type Window struct {
	Params WindowParams
	Shares []WindowShare
}

// BuildWindow cuts shares to the size N·difficulty(bits) and computes the parameters
// and root in the current format (WindowVersion, Base 0). shares must be oldest first
// and end with the window's newest share; the cut share's Weight is changed in place.
func BuildWindow(shares []WindowShare, n hashgrid.Diff, bits uint32, sp SplitParams) (Window, error) {
	return RebuildWindow(shares, WindowParams{Version: WindowVersion, N: n, Bits: bits,
		FeeBps: sp.FeeBps, DirectMin: sp.DirectMin, MaxDirect: sp.MaxDirect})
}

// RebuildWindow cuts shares as the parameters p say (N, Bits, the split) and computes
// the window's parameters and root in p's format, at p's Base: what a verifier or the
// pool's crediting does with a published window, whose commitment is then compared.
// It is O(len(shares)) in time and memory. shares must be oldest first and end with
// the window's newest share; the cut share's Weight is changed in place.
func RebuildWindow(shares []WindowShare, p WindowParams) (Window, error) {
	size, err := WindowSize(p.N, p.Bits)
	if err != nil {
		return Window{}, err
	}
	w := CutWindow(shares, size)
	q := WindowParams{Version: p.Version, N: p.N, Bits: p.Bits, Size: WorkJSON(size), FeeBps: p.FeeBps, DirectMin: p.DirectMin,
		MaxDirect: p.MaxDirect, Count: uint64(len(w)), Base: p.Base}
	leaves := make([]Hash32, len(w))
	switch p.Version {
	case 0, WindowV1:
		if p.Base != 0 {
			return Window{}, fmt.Errorf("payout: window version %d has no base, got %d", p.Version, p.Base)
		}
		for i := range w {
			leaves[i] = w[i].Leaf()
		}
		q.Root = MerkleRoot(leaves)
	case WindowV2:
		if len(w) > 0 && p.Base > math.MaxUint64-uint64(len(w)-1) {
			return Window{}, fmt.Errorf("payout: window base %d overflows with %d shares", p.Base, len(w))
		}
		for i := range w {
			leaves[i] = w[i].LeafV2()
		}
		q.Root = AlignedRoot(p.Base, leaves)
	default:
		return Window{}, fmt.Errorf("payout: unknown window version %d (this hashgrid knows 1 and 2: upgrade it)", p.Version)
	}
	var total hashgrid.Work
	for i := range w {
		total = total.Add(w[i].Weight)
	}
	q.Total = WorkJSON(total)
	if len(w) > 0 {
		q.Start, q.End, q.First = w[0].Seq, w[len(w)-1].Seq, w[0].Weight
	}
	return Window{Params: q, Shares: w}, nil
}

// Weights sums the window's weights by address.
func (w Window) Weights() []Weight {
	idx := map[string]int{}
	var out []Weight
	for _, s := range w.Shares {
		i, ok := idx[s.Address]
		if !ok {
			i = len(out)
			idx[s.Address] = i
			out = append(out, Weight{Address: s.Address})
		}
		out[i].Work = out[i].Work.Add(s.Weight)
	}
	return out
}

// CommitmentTag starts the coinbase output that carries a window commitment:
// OP_RETURN, a 36-byte push, "hgw1", then the 32-byte commitment.
var CommitmentTag = []byte{0x6a, 0x24, 'h', 'g', 'w', '1'}

// CommitmentScript returns the zero-value output script committing to c.
func CommitmentScript(c Hash32) []byte { return append(append([]byte(nil), CommitmentTag...), c[:]...) }

// FindCommitment returns the window commitment among output scripts, if any.
func FindCommitment(scripts [][]byte) (Hash32, bool) {
	for _, s := range scripts {
		if len(s) == len(CommitmentTag)+32 && bytes.HasPrefix(s, CommitmentTag) {
			var c Hash32
			copy(c[:], s[len(CommitmentTag):])
			return c, true
		}
	}
	return Hash32{}, false
}
