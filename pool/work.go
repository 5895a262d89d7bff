package pool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pow"
)

// Output is one coinbase output: value in satoshis to a script.
type Output struct {
	Value  int64
	Script []byte
}

// DefaultMaxJobShares is Config.MaxJobShares's default.
const DefaultMaxJobShares = 4096

// MaxTagBytes bounds the pool tag written into the coinbase script; with BIP 34's
// height push and up to 20 extranonce bytes the script stays within consensus's 100.
const MaxTagBytes = 64

// work is one coinbase layout over one block template: everything a share's header is
// built from, except what the miner chooses (extranonce2, ntime, nonce, version bits).
// Jobs sent to miners point at a work; several jobs may share one.
type work struct {
	tmpl       *node.Template
	height     int64
	version    uint32
	bits       uint32
	prev       chainhash.Hash // internal byte order
	prevStr    string         // stratum form: words byte-swapped
	coinb1     []byte
	coinb2     []byte
	branch     []chainhash.Hash // shared by every layout of the template: read only
	branchJSON []byte           // the same as mining.notify's JSON list; read only
	netTgt     pow.Target
	en1Size    int
	en2Size    int
	witness    bool
	outputs    []Output
	reward     int64
	stale      *atomic.Bool // set when the chain tip moved on; shared by the tip's templates
	mu         sync.Mutex
	// seen holds the header hashes of accepted shares, for the duplicate check. Each
	// connection adds at most Config.MaxJobShares (see session.sharesOn).
	seen map[chainhash.Hash]struct{}
}

// coinbaseParts builds coinb1 and coinb2 around the extranonce space. The coinbase
// script is: BIP 34 height push ‖ tag ‖ extranonce1 ‖ extranonce2.
func coinbaseParts(height int64, tag []byte, en1Size, en2Size int, outputs []Output, witnessCommitment []byte) (coinb1, coinb2 []byte, err error) {
	if len(tag) > MaxTagBytes {
		return nil, nil, fmt.Errorf("pool: tag of %d bytes, at most %d", len(tag), MaxTagBytes)
	}
	hpush, err := heightPush(height)
	if err != nil {
		return nil, nil, err
	}
	if coinb1, err = appendCoinb1(nil, hpush, tag, en1Size, en2Size); err != nil {
		return nil, nil, err
	}
	if coinb2, err = appendCoinb2(nil, outputs, appendCoinb2Tail(nil, witnessCommitment)); err != nil {
		return nil, nil, err
	}
	return coinb1, coinb2, nil
}

// heightPush is the BIP 34 push of a block height that starts a coinbase script.
func heightPush(height int64) ([]byte, error) {
	// txscript encodes small heights minimally (OP_1..OP_16), as BIP 34 requires.
	hpush, err := txscript.NewScriptBuilder().AddInt64(height).Script()
	if err != nil {
		return nil, fmt.Errorf("pool: height push: %w", err)
	}
	return hpush, nil
}

// appendCoinb1 appends coinb1, the coinbase up to the extranonces: it depends on the
// template's height alone, so every layout of a template shares it.
func appendCoinb1(dst, hpush, tag []byte, en1Size, en2Size int) ([]byte, error) {
	if len(tag) > MaxTagBytes {
		return nil, fmt.Errorf("pool: tag of %d bytes, at most %d", len(tag), MaxTagBytes)
	}
	scriptLen := len(hpush) + len(tag) + en1Size + en2Size
	if scriptLen < 2 || scriptLen > 100 {
		return nil, fmt.Errorf("pool: coinbase script of %d bytes, want 2..100", scriptLen)
	}
	dst = slices.Grow(dst, 42+len(hpush)+len(tag))
	dst = binary.LittleEndian.AppendUint32(dst, 1) // tx version
	dst = append(dst, 1)                           // one input
	dst = append(dst, make([]byte, 32)...)         // null prevout
	dst = binary.LittleEndian.AppendUint32(dst, 0xffffffff)
	dst = appendVarInt(dst, uint64(scriptLen))
	return append(append(dst, hpush...), tag...), nil
}

// appendCoinb2Tail appends what ends every coinb2 of a template after its payout
// outputs: the witness commitment output, when there is one, and the lock time.
func appendCoinb2Tail(dst, witnessCommitment []byte) []byte {
	if witnessCommitment != nil {
		dst = binary.LittleEndian.AppendUint64(dst, 0)
		dst = appendVarInt(dst, uint64(len(witnessCommitment)))
		dst = append(dst, witnessCommitment...)
	}
	return binary.LittleEndian.AppendUint32(dst, 0) // lock time
}

// appendCoinb2 appends coinb2, the coinbase after the extranonces: the input's
// sequence, the outputs, then tail (appendCoinb2Tail), which says whether a witness
// commitment output follows the payouts.
func appendCoinb2(dst []byte, outputs []Output, tail []byte) ([]byte, error) {
	n := len(outputs)
	if len(tail) > 4 {
		n++ // the witness commitment
	}
	size := 4 + 9 + len(tail)
	for _, o := range outputs {
		if o.Value < 0 {
			return nil, fmt.Errorf("pool: negative output value %d", o.Value)
		}
		size += 8 + 9 + len(o.Script)
	}
	dst = slices.Grow(dst, size)
	dst = binary.LittleEndian.AppendUint32(dst, 0xffffffff) // sequence
	dst = appendVarInt(dst, uint64(n))
	for _, o := range outputs {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(o.Value))
		dst = appendVarInt(dst, uint64(len(o.Script)))
		dst = append(dst, o.Script...)
	}
	return append(dst, tail...), nil
}

// header builds the 80-byte header for a share.
func (w *work) header(dst *[80]byte, version uint32, root *chainhash.Hash, ntime, nonce uint32) {
	pow.Header(dst, version, &w.prev, root, ntime, w.bits, nonce)
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

// appendVarInt appends v as Bitcoin's CompactSize integer.
func appendVarInt(b []byte, v uint64) []byte {
	switch {
	case v < 0xfd:
		return append(b, byte(v))
	case v <= 0xffff:
		return binary.LittleEndian.AppendUint16(append(b, 0xfd), uint16(v))
	case v <= 0xffffffff:
		return binary.LittleEndian.AppendUint32(append(b, 0xfe), uint32(v))
	}
	return binary.LittleEndian.AppendUint64(append(b, 0xff), v)
}
