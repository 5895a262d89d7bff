package pool

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sync"
	"sync/atomic"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// Output is one coinbase output: value in satoshis to a script.
type Output struct {
	Value  int64
	Script []byte
}

// MaxTagBytes bounds the pool tag written into the coinbase script; with BIP 34's
// height push and up to 20 extranonce bytes the script stays within consensus's 100.
const MaxTagBytes = 64

// work is one coinbase layout over one block template: everything a share's header is
// built from, except what the miner chooses (extranonce2, ntime, nonce, version bits).
// Jobs sent to miners point at a work; several jobs may share one.
type work struct {
	tmpl     *node.Template
	height   int64
	version  uint32
	bits     uint32
	prev     chainhash.Hash // internal byte order
	prevStr  string         // stratum form: words byte-swapped
	coinb1   []byte
	coinb2   []byte
	branch   []chainhash.Hash
	netTgt   target
	en1Size  int
	en2Size  int
	witness  bool
	outputs  []Output
	reward   int64
	stale    atomic.Bool // set when the chain tip moved on
	mu       sync.Mutex
	seen     map[chainhash.Hash]struct{} // header hashes of accepted shares: duplicates
	maxSeen  int
	notified bool
}

// coinbaseParts builds coinb1 and coinb2 around the extranonce space. The coinbase
// script is: BIP 34 height push ‖ tag ‖ extranonce1 ‖ extranonce2.
func coinbaseParts(height int64, tag []byte, en1Size, en2Size int, outputs []Output, witnessCommitment []byte) (coinb1, coinb2 []byte, err error) {
	if len(tag) > MaxTagBytes {
		return nil, nil, fmt.Errorf("pool: tag of %d bytes, at most %d", len(tag), MaxTagBytes)
	}
	// txscript encodes small heights minimally (OP_1..OP_16), as BIP 34 requires.
	hpush, err := txscript.NewScriptBuilder().AddInt64(height).Script()
	if err != nil {
		return nil, nil, fmt.Errorf("pool: height push: %w", err)
	}
	scriptLen := len(hpush) + len(tag) + en1Size + en2Size
	if scriptLen < 2 || scriptLen > 100 {
		return nil, nil, fmt.Errorf("pool: coinbase script of %d bytes, want 2..100", scriptLen)
	}
	var b1 bytes.Buffer
	binary.Write(&b1, binary.LittleEndian, uint32(1)) // tx version
	b1.WriteByte(1)                                  // one input
	b1.Write(make([]byte, 32))                       // null prevout
	binary.Write(&b1, binary.LittleEndian, uint32(0xffffffff))
	wire.WriteVarInt(&b1, 0, uint64(scriptLen))
	b1.Write(hpush)
	b1.Write(tag)

	var b2 bytes.Buffer
	binary.Write(&b2, binary.LittleEndian, uint32(0xffffffff)) // sequence
	n := len(outputs)
	if witnessCommitment != nil {
		n++
	}
	wire.WriteVarInt(&b2, 0, uint64(n))
	for _, o := range outputs {
		if o.Value < 0 {
			return nil, nil, fmt.Errorf("pool: negative output value %d", o.Value)
		}
		binary.Write(&b2, binary.LittleEndian, uint64(o.Value))
		wire.WriteVarInt(&b2, 0, uint64(len(o.Script)))
		b2.Write(o.Script)
	}
	if witnessCommitment != nil {
		binary.Write(&b2, binary.LittleEndian, uint64(0))
		wire.WriteVarInt(&b2, 0, uint64(len(witnessCommitment)))
		b2.Write(witnessCommitment)
	}
	binary.Write(&b2, binary.LittleEndian, uint32(0)) // lock time
	return b1.Bytes(), b2.Bytes(), nil
}

// merkleBranch returns the hashes a miner folds the coinbase hash with, from the leaves
// (the template's txids, coinbase excluded).
func merkleBranch(txids []chainhash.Hash) []chainhash.Hash {
	var branch []chainhash.Hash
	// level[0] stands for the (unknown) coinbase-side hash.
	level := make([]chainhash.Hash, len(txids)+1)
	copy(level[1:], txids)
	for len(level) > 1 {
		branch = append(branch, level[1])
		next := make([]chainhash.Hash, 1, (len(level)+1)/2)
		for i := 2; i < len(level); i += 2 {
			r := level[i]
			if i+1 < len(level) {
				r = level[i+1]
			}
			next = append(next, hashPair(level[i], r))
		}
		level = next
	}
	return branch
}

func hashPair(a, b chainhash.Hash) chainhash.Hash {
	var buf [64]byte
	copy(buf[:32], a[:])
	copy(buf[32:], b[:])
	return sha256d(buf[:])
}

func sha256d(b []byte) chainhash.Hash {
	h := sha256.Sum256(b)
	return sha256.Sum256(h[:])
}

// merkleRoot folds a coinbase hash up the branch.
func merkleRoot(cb chainhash.Hash, branch []chainhash.Hash) chainhash.Hash {
	h := cb
	for _, b := range branch {
		h = hashPair(h, b)
	}
	return h
}

// stratumPrevHash writes the header's prevhash as Stratum sends it: the 32 internal-order
// bytes with each 4-byte word byte-swapped.
func stratumPrevHash(h chainhash.Hash) string {
	var b [32]byte
	for i := 0; i < 32; i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = h[i+3], h[i+2], h[i+1], h[i]
	}
	return hex.EncodeToString(b[:])
}

// target is a 256-bit number in four little-endian words (w[3] most significant),
// compared against a header hash read as a little-endian integer.
type target [4]uint64

func targetFromHash(h *chainhash.Hash) target {
	return target{
		binary.LittleEndian.Uint64(h[0:]),
		binary.LittleEndian.Uint64(h[8:]),
		binary.LittleEndian.Uint64(h[16:]),
		binary.LittleEndian.Uint64(h[24:]),
	}
}

// le reports t <= u.
func (t target) le(u target) bool {
	for i := 3; i >= 0; i-- {
		if t[i] != u[i] {
			return t[i] < u[i]
		}
	}
	return true
}

func targetFromBig(b *big.Int) target {
	var t target
	if b.Sign() < 0 {
		return t
	}
	if b.BitLen() > 256 {
		return target{math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64}
	}
	words := b.Bits() // little-endian words
	for i := 0; i < len(words) && i < 4; i++ {
		t[i] = uint64(words[i])
	}
	return t
}

// diff1 is the difficulty-1 target 0xFFFF·2^208.
var diff1 = new(big.Int).Lsh(big.NewInt(0xFFFF), 208)

// diff1Float is diff1 as a float64.
var diff1Float = float64(0xFFFF) * math.Exp2(208)

// shareTarget returns the target for difficulty d: floor(diff1 / d).
func shareTarget(d hashgrid.Diff) target {
	if d == 0 {
		return target{math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64}
	}
	n := new(big.Int).Lsh(diff1, 32)
	n.Quo(n, new(big.Int).SetUint64(uint64(d)))
	return targetFromBig(n)
}

// compactTarget expands nBits.
func compactTarget(bits uint32) (target, error) {
	exp := bits >> 24
	mant := bits & 0x007fffff
	if bits&0x00800000 != 0 && mant != 0 {
		return target{}, fmt.Errorf("pool: negative compact target %08x", bits)
	}
	b := new(big.Int).SetUint64(uint64(mant))
	if exp <= 3 {
		b.Rsh(b, uint(8*(3-exp)))
	} else {
		b.Lsh(b, uint(8*(exp-3)))
	}
	if b.BitLen() > 256 {
		return target{}, fmt.Errorf("pool: compact target %08x overflows", bits)
	}
	return targetFromBig(b), nil
}

// hashDifficulty returns diff1 / hash as a float (display and records only; acceptance
// uses exact integer targets).
func hashDifficulty(h *chainhash.Hash) float64 {
	t := targetFromHash(h)
	v := float64(t[3])*math.Exp2(192) + float64(t[2])*math.Exp2(128) + float64(t[1])*math.Exp2(64) + float64(t[0])
	if v == 0 {
		return math.Inf(1)
	}
	return diff1Float / v
}

// header builds the 80-byte header for a share.
func (w *work) header(dst *[80]byte, version uint32, root *chainhash.Hash, ntime, nonce uint32) {
	binary.LittleEndian.PutUint32(dst[0:], version)
	copy(dst[4:36], w.prev[:])
	copy(dst[36:68], root[:])
	binary.LittleEndian.PutUint32(dst[68:], ntime)
	binary.LittleEndian.PutUint32(dst[72:], w.bits)
	binary.LittleEndian.PutUint32(dst[76:], nonce)
}

// coinbase assembles the non-witness coinbase for one extranonce pair.
func (w *work) coinbase(dst []byte, en1 uint32, en2 []byte) []byte {
	dst = append(dst, w.coinb1...)
	dst = binary.BigEndian.AppendUint32(dst, en1)
	dst = append(dst, en2...)
	return append(dst, w.coinb2...)
}

// errDuplicate is returned by markSeen for a header already accepted.
var errDuplicate = errors.New("duplicate share")

// markSeen records an accepted share's header hash; a second sighting is a duplicate.
func (w *work) markSeen(h chainhash.Hash) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.seen[h]; dup {
		return errDuplicate
	}
	if w.seen == nil {
		w.seen = make(map[chainhash.Hash]struct{})
	}
	w.seen[h] = struct{}{}
	return nil
}

// unmarkSeen forgets a share whose acceptance could not be recorded, so that the
// miner's resubmission is not taken for a duplicate.
func (w *work) unmarkSeen(h chainhash.Hash) {
	w.mu.Lock()
	delete(w.seen, h)
	w.mu.Unlock()
}

// block assembles the full block for a solved share: header, the coinbase with its
// witness reserved value when the block commits to witnesses, and the template's
// transactions.
func (w *work) block(hdr *[80]byte, cb []byte) (*wire.MsgBlock, error) {
	var blk wire.MsgBlock
	if err := blk.Header.Deserialize(bytes.NewReader(hdr[:])); err != nil {
		return nil, fmt.Errorf("pool: header: %w", err)
	}
	var cbtx wire.MsgTx
	if err := cbtx.DeserializeNoWitness(bytes.NewReader(cb)); err != nil {
		return nil, fmt.Errorf("pool: coinbase: %w", err)
	}
	if w.witness {
		cbtx.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)}
	}
	blk.Transactions = make([]*wire.MsgTx, 0, 1+len(w.tmpl.Transactions))
	blk.Transactions = append(blk.Transactions, &cbtx)
	for i, t := range w.tmpl.Transactions {
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(t.Data)); err != nil {
			return nil, fmt.Errorf("pool: template transaction %d: %w", i, err)
		}
		blk.Transactions = append(blk.Transactions, &tx)
	}
	return &blk, nil
}
