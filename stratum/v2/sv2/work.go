package sv2

import (
	"encoding/binary"
	"math/big"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
)

// The arithmetic a pool needs to check V2 shares with package pow. A U256 target and
// a header hash are both little-endian 256-bit integers, so a share meets a target
// when pow.HashTarget(&hash).LE(target.Target()), exactly as for V1 shares.

// VersionRollingMask holds the nVersion bits a miner may roll: BIP 323's general
// purpose bits 5 to 28 (the 24 bits chapter 5.1 counts).
const VersionRollingMask uint32 = 0x1fffffe0

// Target returns u as a pow.Target.
func (u U256) Target() pow.Target { return pow.HashTarget((*chainhash.Hash)(&u)) }

// TargetU256 returns t as a U256.
func TargetU256(t pow.Target) U256 {
	var u U256
	for i, w := range t {
		binary.LittleEndian.PutUint64(u[8*i:], w)
	}
	return u
}

// Big returns u as an integer.
func (u U256) Big() *big.Int { return u.Target().Big() }

// BigU256 returns b as a U256, saturating at 0 and at 2^256-1 as pow.FromBig does.
func BigU256(b *big.Int) U256 { return TargetU256(pow.FromBig(b)) }

// DiffU256 returns the target of difficulty d, pow.DiffTarget(d), as a U256: what a
// pool sends in SetTarget and in Open*MiningChannel.Success for a channel it hands
// difficulty d.
func DiffU256(d hashgrid.Diff) U256 { return TargetU256(pow.DiffTarget(d)) }

// diffScale is diff1 in hashgrid.Diff's fixed point: pow.DiffTarget(d) = diffScale/d.
var diffScale = new(big.Int).Lsh(pow.Diff1, 32)

// Diff returns the largest difficulty whose target is not below u, floor(diff1/u) in
// fixed point and saturating at hashgrid.MaxDiff (also for u = 0): the difficulty to
// credit for shares meeting a target a peer chose, never more than they prove.
func (u U256) Diff() hashgrid.Diff {
	t := u.Big()
	if t.Sign() == 0 {
		return hashgrid.MaxDiff
	}
	q := new(big.Int).Quo(diffScale, t)
	if !q.IsUint64() {
		return hashgrid.MaxDiff
	}
	return hashgrid.Diff(q.Uint64())
}

// MinDiff returns the smallest difficulty d whose target pow.DiffTarget(d) is at most
// maxTarget, the max_target of an Open*MiningChannel or UpdateChannel: a pool must not
// hand that channel a lower difficulty. ok is false when no difficulty up to
// hashgrid.MaxDiff is enough, and the channel cannot be served.
func MinDiff(maxTarget U256) (d hashgrid.Diff, ok bool) {
	// floor(S/d) <= M  <=>  S < d(M+1)  <=>  d >= floor(S/(M+1)) + 1
	m1 := new(big.Int).Add(maxTarget.Big(), big.NewInt(1))
	q := new(big.Int).Quo(diffScale, m1)
	q.Add(q, big.NewInt(1))
	if !q.IsUint64() {
		return hashgrid.MaxDiff, false
	}
	return hashgrid.Diff(q.Uint64()), true
}

// VersionAllowed reports whether a share's nVersion differs from its job's only in
// bits the miner may roll: VersionRollingMask when rolling is allowed (always on a
// standard job; NewExtendedMiningJob.VersionRollingAllowed on an extended one), none
// otherwise.
func VersionAllowed(job, share uint32, rolling bool) bool {
	mask := uint32(0)
	if rolling {
		mask = VersionRollingMask
	}
	return (job^share)&^mask == 0
}

// MerkleRoot returns the merkle root of the job's coinbase completed by extranonce,
// the parts written between prefix and suffix in order: the channel's
// extranonce_prefix, then for an extended channel the share's extranonce (chapter
// 5.3.16). buf is scratch space for the coinbase, returned grown for reuse.
func (j *NewExtendedMiningJob) MerkleRoot(buf []byte, extranonce ...[]byte) (chainhash.Hash, []byte) {
	buf = append(buf[:0], j.CoinbaseTxPrefix...)
	for _, e := range extranonce {
		buf = append(buf, e...)
	}
	buf = append(buf, j.CoinbaseTxSuffix...)
	return pow.MerkleRoot(pow.DoubleSHA256(buf), j.MerklePath), buf
}

// StandardJob returns the standard job that the extended job j becomes on a standard
// channel whose extranonce prefix is extranoncePrefix (chapter 5.1.2.1): same id,
// min_ntime and version, with the merkle root of that channel's coinbase.
func (j *NewExtendedMiningJob) StandardJob(channelID uint32, extranoncePrefix, buf []byte) (NewMiningJob, []byte) {
	root, buf := j.MerkleRoot(buf, extranoncePrefix)
	return NewMiningJob{
		ChannelID:  channelID,
		JobID:      j.JobID,
		MinNTime:   j.MinNTime,
		Version:    j.Version,
		MerkleRoot: root,
	}, buf
}

// StandardHeader writes the 80-byte header that share s commits to on the standard
// job with merkle root root, mined on the chain tip tip: the share's version, ntime
// and nonce, the tip's prev_hash and nbits. Its pow.DoubleSHA256 is the share's hash.
func StandardHeader(dst *[80]byte, s *SubmitSharesStandard, root *chainhash.Hash, tip *SetNewPrevHash) {
	pow.Header(dst, s.Version, &tip.PrevHash, root, s.NTime, tip.NBits, s.Nonce)
}

// ExtendedHeader writes the header that share s commits to on extended job j, for a
// channel with extranoncePrefix, and returns buf (scratch for the coinbase) grown.
func ExtendedHeader(dst *[80]byte, s *SubmitSharesExtended, j *NewExtendedMiningJob, extranoncePrefix []byte, tip *SetNewPrevHash, buf []byte) []byte {
	root, buf := j.MerkleRoot(buf, extranoncePrefix, s.Extranonce)
	pow.Header(dst, s.Version, &tip.PrevHash, &root, s.NTime, tip.NBits, s.Nonce)
	return buf
}
