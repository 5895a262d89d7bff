package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// An anchor commits the log's head to the Bitcoin chain: an OP_RETURN output whose one
// push is AnchorTag, the head entry's 32-byte hash and the entry count (big-endian).
// The entry hash already covers its sequence number; the count is written out so that
// a reader of the chain alone sees how long the anchored log was.
const (
	AnchorTag         = "hgreg"
	AnchorPayloadSize = len(AnchorTag) + 32 + 8
	// AnchorScriptSize is the OP_RETURN output script: the opcode, one push opcode, the
	// payload.
	AnchorScriptSize = 2 + AnchorPayloadSize
	// MinAnchorChange is the least the change output may keep: below about 300 sat a
	// P2WPKH output is dust that nodes refuse to relay.
	MinAnchorChange = 1000
)

// Anchor records where a log head was committed: the transaction output that holds the
// commitment and the block that holds the transaction.
type Anchor struct {
	HeadSeq  uint64 `json:"head_seq"`  // entries in the log when anchored
	HeadHash string `json:"head_hash"` // hash of entry HeadSeq
	Block    string `json:"block"`     // block hash (RPC hex)
	Height   int64  `json:"height"`
	Txid     string `json:"txid"`
	Vout     uint32 `json:"vout"`
	// Coinbase says the commitment is an output of the block's coinbase, which the
	// operator's pool mined (see FindCoinbaseAnchor), not of a transaction it sent.
	Coinbase bool `json:"coinbase,omitempty"`
}

// AnchorScript returns the OP_RETURN output script committing to a head.
func AnchorScript(headHash string, count uint64) ([]byte, error) {
	h, err := hex.DecodeString(headHash)
	if err != nil || len(h) != 32 {
		return nil, fmt.Errorf("anchor: head hash %q: want 64 hex digits", clipStr(headHash))
	}
	if count == 0 {
		return nil, errors.New("anchor: empty log")
	}
	p := make([]byte, 0, AnchorScriptSize)
	p = append(p, txscript.OP_RETURN, byte(AnchorPayloadSize))
	p = append(p, AnchorTag...)
	p = append(p, h...)
	p = binary.BigEndian.AppendUint64(p, count)
	return p, nil
}

// ParseAnchorScript reads a script written by AnchorScript; ok is false for any other
// script.
func ParseAnchorScript(s []byte) (headHash string, count uint64, ok bool) {
	if len(s) != AnchorScriptSize || s[0] != txscript.OP_RETURN || s[1] != byte(AnchorPayloadSize) ||
		string(s[2:2+len(AnchorTag)]) != AnchorTag {
		return "", 0, false
	}
	p := s[2+len(AnchorTag):]
	count = binary.BigEndian.Uint64(p[32:])
	if count == 0 {
		return "", 0, false
	}
	return hex.EncodeToString(p[:32]), count, true
}

// Funding is the P2WPKH output an anchor transaction spends.
type Funding struct {
	OutPoint wire.OutPoint
	Value    int64  // satoshis
	PkScript []byte // must pay to the key's P2WPKH script
}

// P2WPKHScript returns the output script paying to key's compressed public key.
func P2WPKHScript(key *btcec.PublicKey) []byte {
	s, _ := txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(address.Hash160(key.SerializeCompressed())).Script()
	return s
}

// BuildAnchorTx returns a signed transaction that spends f, writes the commitment to
// its output 0 and returns the rest, less fee, to the same script at output 1. Only
// P2WPKH funding is supported: that is what a node's generate and most wallets give.
// Signing is deterministic (RFC 6979), so the same funding, head and fee give the same
// transaction: broadcasting it again is harmless.
func BuildAnchorTx(f Funding, key *btcec.PrivateKey, headHash string, count uint64, fee int64) (*wire.MsgTx, error) {
	script, err := AnchorScript(headHash, count)
	if err != nil {
		return nil, err
	}
	pay := P2WPKHScript(key.PubKey())
	if !bytes.Equal(f.PkScript, pay) {
		return nil, fmt.Errorf("anchor: funding output %s does not pay the key's P2WPKH script", f.OutPoint)
	}
	if fee < 0 || f.Value-fee < MinAnchorChange {
		return nil, fmt.Errorf("anchor: funding output %s holds %d sat; with a fee of %d sat the change would be below %d sat", f.OutPoint, f.Value, fee, MinAnchorChange)
	}
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&f.OutPoint, nil, nil))
	tx.AddTxOut(wire.NewTxOut(0, script))
	tx.AddTxOut(wire.NewTxOut(f.Value-fee, pay))
	hashes := txscript.NewTxSigHashes(tx, txscript.NewCannedPrevOutputFetcher(pay, f.Value))
	wit, err := txscript.WitnessSignature(tx, hashes, 0, f.Value, pay, txscript.SigHashAll, key, true)
	if err != nil {
		return nil, fmt.Errorf("anchor: sign: %w", err)
	}
	tx.TxIn[0].Witness = wit
	return tx, nil
}

// Chain is what anchors are checked against: a node's best chain.
type Chain interface {
	// BlockHash returns the hash of the best chain's block at height.
	BlockHash(ctx context.Context, height int64) (chainhash.Hash, error)
	// Block returns a block by hash; it must check that the block has that hash.
	Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error)
}

// AnchorError says why an anchor does not hold.
type AnchorError struct {
	Anchor  Anchor
	Problem string
}

func (e *AnchorError) Error() string {
	return fmt.Sprintf("registry: anchor of entry %d in block %d: %s", e.Anchor.HeadSeq, e.Anchor.Height, e.Problem)
}

// FindAnchor looks for tx in blk and returns the anchor it makes there.
func FindAnchor(blk *wire.MsgBlock, height int64, txid chainhash.Hash) (Anchor, bool) {
	for _, tx := range blk.Transactions {
		if tx.TxHash() != txid {
			continue
		}
		for i, out := range tx.TxOut {
			if h, n, ok := ParseAnchorScript(out.PkScript); ok {
				return Anchor{HeadSeq: n, HeadHash: h, Block: blk.BlockHash().String(), Height: height, Txid: txid.String(), Vout: uint32(i)}, true
			}
		}
	}
	return Anchor{}, false
}

// FindCoinbaseAnchor looks in blk's coinbase for an output committing to entry count
// with hash headHash, as a pool's coinbase commitment carries it (pool.ReadCommitment).
func FindCoinbaseAnchor(blk *wire.MsgBlock, height int64, headHash string, count uint64) (Anchor, bool) {
	if len(blk.Transactions) == 0 {
		return Anchor{}, false
	}
	cb := blk.Transactions[0]
	for i, out := range cb.TxOut {
		if h, n, ok := ParseAnchorScript(out.PkScript); ok && h == headHash && n == count {
			return Anchor{HeadSeq: n, HeadHash: h, Block: blk.BlockHash().String(), Height: height, Txid: cb.TxHash().String(), Vout: uint32(i), Coinbase: true}, true
		}
	}
	return Anchor{}, false
}

// CheckAnchor checks a on the chain: its block is the best chain's block at its height,
// the block holds its transaction (as its coinbase for a coinbase anchor), and the
// transaction's output commits to its head.
func CheckAnchor(ctx context.Context, c Chain, a Anchor) error {
	bad := func(f string, args ...any) error { return &AnchorError{Anchor: a, Problem: fmt.Sprintf(f, args...)} }
	bh, err := chainhash.NewHashFromStr(a.Block)
	if err != nil || len(a.Block) != 64 {
		return bad("malformed block hash")
	}
	txid, err := chainhash.NewHashFromStr(a.Txid)
	if err != nil || len(a.Txid) != 64 {
		return bad("malformed txid")
	}
	best, err := c.BlockHash(ctx, a.Height)
	if err != nil {
		return fmt.Errorf("registry: anchor: block at height %d: %w", a.Height, err)
	}
	if best != *bh {
		return bad("block %s is not on the best chain (its block at that height is %s)", a.Block, best)
	}
	blk, err := c.Block(ctx, *bh)
	if err != nil {
		return fmt.Errorf("registry: anchor: %w", err)
	}
	for i, tx := range blk.Transactions {
		if tx.TxHash() != *txid {
			continue
		}
		if a.Coinbase != (i == 0) {
			return bad("transaction %s is at position %d of the block; the anchor says coinbase %v", a.Txid, i, a.Coinbase)
		}
		if int(a.Vout) >= len(tx.TxOut) {
			return bad("transaction %s has no output %d", a.Txid, a.Vout)
		}
		h, n, ok := ParseAnchorScript(tx.TxOut[a.Vout].PkScript)
		if !ok {
			return bad("output %s:%d is not a registry commitment", a.Txid, a.Vout)
		}
		if h != a.HeadHash || n != a.HeadSeq {
			return bad("output %s:%d commits to entry %d %s, not entry %d %s", a.Txid, a.Vout, n, h, a.HeadSeq, a.HeadHash)
		}
		return nil
	}
	return bad("block %s does not hold transaction %s", a.Block, a.Txid)
}

// anchorBody is the log entry recording an anchor of the entry just before it.
type anchorBody = Anchor

func (s *State) applyAnchor(e *Entry, a Anchor) error {
	if a.HeadSeq+1 != e.Seq || a.HeadHash != e.Prev {
		return fmt.Errorf("anchor: records entry %d %s; an anchor entry records the entry just before it", a.HeadSeq, clipStr(a.HeadHash))
	}
	for _, h := range []string{a.Block, a.Txid} {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return fmt.Errorf("anchor: %q: want 64 hex digits", clipStr(h))
		}
	}
	if a.Height < 0 {
		return fmt.Errorf("anchor: height %d", a.Height)
	}
	s.Anchors = append(s.Anchors, a)
	return nil
}

// Head returns the sequence number and hash of the log's last entry, and whether that
// entry is an anchor (then there is nothing new to anchor).
func (r *Registry) Head() (seq uint64, hash string, anchored bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.Seq, r.last.Hash, r.last.Kind == kindAnchor
}

// RecordAnchor appends an entry recording a, which must anchor the current head.
func (r *Registry) RecordAnchor(a Anchor) (Entry, error) {
	return r.do(kindAnchor, anchorBody(a))
}

// AttachAnchor writes a into a report file (see SaveReport) in place. The anchor is not
// covered by the report's signature and need not be: verify checks it on the chain.
// The anchor must cover the report's entry.
func AttachAnchor(path string, a Anchor) error {
	b, err := readFileBounded(path)
	if err != nil {
		return err
	}
	var f ReportFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("registry: report file %s: %w", path, err)
	}
	if a.HeadSeq < f.Entry.Seq {
		return fmt.Errorf("registry: anchor of entry %d does not cover report entry %d", a.HeadSeq, f.Entry.Seq)
	}
	f.Anchor = &a
	return writeReportFile(path, f)
}

// AnchorCheck is what CheckReportAnchor found.
type AnchorCheck struct {
	Anchor Anchor
	LogLen int // entries in the log given, 0 without one
}

// CheckReportAnchor checks a report file's anchor against the chain and, when logFile is
// given, the log against the anchor. It expects VerifyReport to have passed on the same
// file (and log): that shows the report is the signed entry's; this shows the entry is
// the one the chain holds, or is in a log whose anchored prefix the chain holds.
//
// What it catches: an entry before the anchor changed (its hash, and every later one,
// differ from the anchored head), entries removed from the end (the log is shorter than
// the anchored count), a log regenerated and re-signed with the same key (its head is
// not the anchored one), a report re-signed with other figures (its entry is not the
// anchored one's). What it cannot: a log anchored only after it was rewritten. The
// block's height and time bound when the log existed; the auditor judges whether that
// is soon enough after the report's period.
func CheckReportAnchor(ctx context.Context, c Chain, file []byte, logFile []byte) (AnchorCheck, error) {
	var l *Log
	if logFile != nil {
		var err error
		if l, err = ReadLog(bytes.NewReader(logFile), nil); err != nil {
			return AnchorCheck{}, fmt.Errorf("registry: log: %w", err)
		}
	}
	return CheckReportAnchorIn(ctx, c, file, l)
}

// CheckReportAnchorIn is CheckReportAnchor against a log already read; l may be nil.
func CheckReportAnchorIn(ctx context.Context, c Chain, file []byte, l *Log) (AnchorCheck, error) {
	var f ReportFile
	if err := json.Unmarshal(file, &f); err != nil {
		return AnchorCheck{}, fmt.Errorf("registry: report file: %w", err)
	}
	if f.Anchor == nil {
		return AnchorCheck{}, &ChainError{Seq: f.Entry.Seq, Problem: "report has no anchor (run 'hashgrid registry anchor -report')"}
	}
	a := *f.Anchor
	chk := AnchorCheck{Anchor: a}
	bad := func(p string) (AnchorCheck, error) { return AnchorCheck{}, &AnchorError{Anchor: a, Problem: p} }
	switch {
	case a.HeadSeq < f.Entry.Seq:
		return bad(fmt.Sprintf("anchors entry %d, before the report's entry %d", a.HeadSeq, f.Entry.Seq))
	case a.HeadSeq == f.Entry.Seq && a.HeadHash != f.Entry.Hash:
		return bad(fmt.Sprintf("the report's entry %d has hash %s, the chain holds %s (report re-signed or log rewritten after the anchor)", f.Entry.Seq, f.Entry.Hash, a.HeadHash))
	case a.HeadSeq > f.Entry.Seq && l == nil:
		return bad(fmt.Sprintf("anchors entry %d, after the report's entry %d: pass the log to link them", a.HeadSeq, f.Entry.Seq))
	}
	if l != nil {
		es := l.Entries
		chk.LogLen = len(es)
		if uint64(len(es)) < a.HeadSeq {
			return bad(fmt.Sprintf("the log ends at entry %d; the chain holds a log of %d entries (entries removed from the end)", len(es), a.HeadSeq))
		}
		if h := es[a.HeadSeq-1].Hash; h != a.HeadHash {
			return bad(fmt.Sprintf("the log's entry %d has hash %s, the chain holds %s (log changed or regenerated after the anchor)", a.HeadSeq, h, a.HeadHash))
		}
		if f.Entry.Seq > uint64(len(es)) || es[f.Entry.Seq-1].Hash != f.Entry.Hash {
			return bad("the log does not hold the report's entry")
		}
	}
	if err := CheckAnchor(ctx, c, a); err != nil {
		return AnchorCheck{}, err
	}
	return chk, nil
}

// CheckLogAnchors checks every anchor entry of a log on the chain and against the log.
// Entries removed from the end together with the anchors after them cannot be seen this
// way; a report carries its anchor for that.
func CheckLogAnchors(ctx context.Context, c Chain, l *Log) ([]Anchor, error) {
	es := l.Entries
	var out []Anchor
	for _, e := range es {
		if e.Kind != kindAnchor {
			continue
		}
		var a Anchor
		if err := json.Unmarshal(e.Body, &a); err != nil {
			return nil, &ChainError{Seq: e.Seq, Problem: "malformed anchor body"}
		}
		if a.HeadSeq == 0 || a.HeadSeq >= e.Seq || es[a.HeadSeq-1].Hash != a.HeadHash {
			return nil, &ChainError{Seq: e.Seq, Problem: "anchor does not record an earlier entry of this log"}
		}
		if err := CheckAnchor(ctx, c, a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func clipStr(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}
