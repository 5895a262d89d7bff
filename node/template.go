package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// Consensus limits a template is checked against.
const (
	// MaxBlockWeight is the BIP 141 block weight limit.
	MaxBlockWeight = 4_000_000
	// MaxSatoshi is the total supply in satoshis; no amount may exceed it.
	MaxSatoshi = 21_000_000 * 100_000_000
	// MaxSubsidy is the largest block subsidy there ever was (50 BTC).
	MaxSubsidy = 50 * 100_000_000
	// maxLongPollID bounds the opaque long poll id the node hands back.
	maxLongPollID = 1024
)

// witnessCommitmentPrefix is OP_RETURN, a 36-byte push and the BIP 141 magic aa21a9ed.
var witnessCommitmentPrefix = [6]byte{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed}

// WitnessCommitmentScriptLen is the length of the full witness commitment output script.
const WitnessCommitmentScriptLen = 38

// TemplateTx is one non-coinbase transaction of a template.
type TemplateTx struct {
	Data   []byte         // serialized with witness
	TxID   chainhash.Hash // hash without witness: the merkle tree leaf
	WTxID  chainhash.Hash // hash with witness
	Fee    int64          // satoshis
	Weight int64
}

// Template is a block template from getblocktemplate, checked for consistency.
type Template struct {
	Version       int32
	PrevHash      chainhash.Hash
	Transactions  []TemplateTx
	CoinbaseValue int64  // satoshis: subsidy plus fees
	Bits          uint32 // compact target
	// Target is the network target as a big-endian 256-bit number (the RPC "target" hex).
	Target     [32]byte
	CurTime    int64
	MinTime    int64
	Height     int64
	LongPollID string
	// WitnessCommitment is the full coinbase output script (6a24aa21a9ed‖hash), or nil
	// when the node sent none and no transaction carries a witness.
	WitnessCommitment []byte
	Rules             []string
}

// TxIDs returns the transactions' txids in template order, for the merkle branch.
func (t *Template) TxIDs() []chainhash.Hash {
	ids := make([]chainhash.Hash, len(t.Transactions))
	for i := range t.Transactions {
		ids[i] = t.Transactions[i].TxID
	}
	return ids
}

// TotalFees returns the sum of the transactions' fees in satoshis.
func (t *Template) TotalFees() int64 {
	var sum int64
	for i := range t.Transactions {
		sum += t.Transactions[i].Fee
	}
	return sum
}

// BlockTemplate calls getblocktemplate with the segwit rule. With a non-empty longPollID
// it is a BIP 22 long poll: the node answers when the template changes, and the call
// uses the long poll timeout.
func (c *Client) BlockTemplate(ctx context.Context, longPollID string) (*Template, error) {
	req := map[string]any{"rules": []string{"segwit"}}
	timeout := c.timeout
	if longPollID != "" {
		req["longpollid"] = longPollID
		timeout = c.longPollTimeout
	}
	var t templateResult
	if err := c.call(ctx, timeout, "getblocktemplate", []any{req}, &t); err != nil {
		return nil, err
	}
	return t.t, nil
}

// templateResult runs ParseTemplate while the reply is decoded, so that a template that
// fails its checks counts as a failed call.
type templateResult struct{ t *Template }

func (r *templateResult) UnmarshalJSON(data []byte) (err error) {
	r.t, err = ParseTemplate(data)
	return err
}

type templateJSON struct {
	Version           *int64   `json:"version"`
	PreviousBlockHash string   `json:"previousblockhash"`
	Transactions      []txJSON `json:"transactions"`
	CoinbaseValue     *int64   `json:"coinbasevalue"`
	Bits              string   `json:"bits"`
	Target            string   `json:"target"`
	CurTime           int64    `json:"curtime"`
	MinTime           int64    `json:"mintime"`
	Height            int64    `json:"height"`
	LongPollID        string   `json:"longpollid"`
	WitnessCommitment string   `json:"default_witness_commitment"`
	Rules             []string `json:"rules"`
}

type txJSON struct {
	Data    string  `json:"data"`
	TxID    string  `json:"txid"`
	Hash    string  `json:"hash"`
	Fee     *int64  `json:"fee"`
	Weight  int64   `json:"weight"`
	Depends []int64 `json:"depends"`
}

// ParseTemplate parses and checks the result object of getblocktemplate. Every
// transaction is decoded and its txid, wtxid and weight recomputed; the node's values
// must match. The witness commitment is recomputed too and must match the node's.
func ParseTemplate(data []byte) (*Template, error) {
	var j templateJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	t := &Template{CurTime: j.CurTime, MinTime: j.MinTime, Height: j.Height, Rules: j.Rules}
	switch {
	case j.Version == nil:
		return nil, errors.New("template: version missing")
	case *j.Version < 1 || *j.Version > 1<<31-1:
		return nil, fmt.Errorf("template: version %d out of range", *j.Version)
	}
	t.Version = int32(*j.Version)
	if err := chainhash.DecodeStrict(&t.PrevHash, j.PreviousBlockHash); err != nil || len(j.PreviousBlockHash) != 64 {
		return nil, fmt.Errorf("template: previousblockhash %q: want 64 hex digits", clip(j.PreviousBlockHash))
	}
	if j.Height < 1 || j.Height > 1<<31-1 {
		return nil, fmt.Errorf("template: height %d out of range", j.Height)
	}
	if j.CurTime <= 0 || j.CurTime > 1<<32-1 {
		return nil, fmt.Errorf("template: curtime %d out of range", j.CurTime)
	}
	if j.MinTime < 0 || j.MinTime > j.CurTime {
		return nil, fmt.Errorf("template: mintime %d out of range (curtime %d)", j.MinTime, j.CurTime)
	}
	if len(j.LongPollID) > maxLongPollID {
		return nil, fmt.Errorf("template: longpollid of %d bytes (limit %d)", len(j.LongPollID), maxLongPollID)
	}
	t.LongPollID = j.LongPollID

	bits, err := parseBits(j.Bits)
	if err != nil {
		return nil, fmt.Errorf("template: bits: %w", err)
	}
	t.Bits = bits
	target, err := CompactToTarget(bits)
	if err != nil {
		return nil, fmt.Errorf("template: bits %08x: %w", bits, err)
	}
	t.Target = target
	if j.Target != "" {
		got, err := hex.DecodeString(j.Target)
		if err != nil || len(got) != 32 {
			return nil, fmt.Errorf("template: target %q: want 64 hex digits", clip(j.Target))
		}
		if !bytes.Equal(got, target[:]) {
			return nil, fmt.Errorf("template: target %s does not match bits %08x", j.Target, bits)
		}
	}

	if j.CoinbaseValue == nil {
		return nil, errors.New("template: coinbasevalue missing")
	}
	t.CoinbaseValue = *j.CoinbaseValue

	t.Transactions = make([]TemplateTx, len(j.Transactions))
	seen := make(map[chainhash.Hash]int, len(j.Transactions))
	var weight, fees int64
	anyWitness := false
	for i := range j.Transactions {
		tx, witness, err := parseTemplateTx(&j.Transactions[i], i)
		if err != nil {
			return nil, fmt.Errorf("template: transaction %d: %w", i, err)
		}
		if k, dup := seen[tx.TxID]; dup {
			return nil, fmt.Errorf("template: transaction %d: duplicate of transaction %d", i, k)
		}
		seen[tx.TxID] = i
		anyWitness = anyWitness || witness
		weight += tx.Weight
		fees += tx.Fee
		if weight > MaxBlockWeight {
			return nil, fmt.Errorf("template: transactions weigh more than %d", MaxBlockWeight)
		}
		if fees > MaxSatoshi {
			return nil, errors.New("template: fees exceed the money supply")
		}
		t.Transactions[i] = tx
	}
	if t.CoinbaseValue < fees || t.CoinbaseValue > fees+MaxSubsidy {
		return nil, fmt.Errorf("template: coinbasevalue %d inconsistent with fees %d", t.CoinbaseValue, fees)
	}

	computed := WitnessCommitmentScript(t.Transactions)
	switch raw := j.WitnessCommitment; {
	case raw != "":
		b, err := hex.DecodeString(raw)
		if err != nil {
			return nil, fmt.Errorf("template: default_witness_commitment: %w", err)
		}
		switch {
		case len(b) == chainhash.HashSize: // btcd: the bare commitment hash
			b = append(witnessCommitmentPrefix[:], b...)
		case len(b) == WitnessCommitmentScriptLen && bytes.HasPrefix(b, witnessCommitmentPrefix[:]):
		default:
			return nil, fmt.Errorf("template: default_witness_commitment %q: want a 32-byte hash or a 38-byte 6a24aa21a9ed script", clip(raw))
		}
		if !bytes.Equal(b, computed) {
			return nil, fmt.Errorf("template: default_witness_commitment %x does not match the transactions (want %x)", b, computed)
		}
		t.WitnessCommitment = b
	case anyWitness:
		// A block with witness data needs the commitment; the node left it out.
		t.WitnessCommitment = computed
	}
	return t, nil
}

func parseTemplateTx(j *txJSON, i int) (TemplateTx, bool, error) {
	var tx TemplateTx
	data, err := hex.DecodeString(j.Data)
	if err != nil {
		return tx, false, fmt.Errorf("data: %w", err)
	}
	var msg wire.MsgTx
	r := bytes.NewReader(data)
	if err := msg.Deserialize(r); err != nil {
		return tx, false, fmt.Errorf("data: %w", err)
	}
	if r.Len() != 0 {
		return tx, false, fmt.Errorf("data: %d trailing bytes", r.Len())
	}
	if len(msg.TxIn) == 0 || len(msg.TxOut) == 0 {
		return tx, false, errors.New("data: no inputs or no outputs")
	}
	if isCoinbase(&msg) {
		return tx, false, errors.New("data: a coinbase transaction")
	}
	tx.Data = data
	tx.TxID = msg.TxHash()
	tx.WTxID = msg.WitnessHash()
	tx.Weight = int64(msg.SerializeSizeStripped()*3 + msg.SerializeSize())
	if j.TxID != "" && j.TxID != tx.TxID.String() {
		return tx, false, fmt.Errorf("txid %q does not match the data (%s)", clip(j.TxID), tx.TxID)
	}
	// Bitcoin Core's "hash" is the wtxid; btcd sends the wtxid there as well.
	if j.Hash != "" && j.Hash != tx.WTxID.String() {
		return tx, false, fmt.Errorf("hash %q does not match the data (%s)", clip(j.Hash), tx.WTxID)
	}
	if j.Weight != 0 && j.Weight != tx.Weight {
		return tx, false, fmt.Errorf("weight %d, data weighs %d", j.Weight, tx.Weight)
	}
	if j.Fee == nil {
		return tx, false, errors.New("fee missing")
	}
	if *j.Fee < 0 || *j.Fee > MaxSatoshi {
		return tx, false, fmt.Errorf("fee %d out of range", *j.Fee)
	}
	tx.Fee = *j.Fee
	for _, d := range j.Depends {
		// depends are 1-based indexes of earlier transactions in the template.
		if d < 1 || d > int64(i) {
			return tx, false, fmt.Errorf("depends on %d: not an earlier transaction", d)
		}
	}
	return tx, msg.HasWitness(), nil
}

func isCoinbase(msg *wire.MsgTx) bool {
	if len(msg.TxIn) != 1 {
		return false
	}
	prev := msg.TxIn[0].PreviousOutPoint
	return prev.Index == wire.MaxPrevOutIndex && prev.Hash == (chainhash.Hash{})
}

// WitnessCommitmentScript returns the BIP 141 commitment output script for a block with
// these transactions after its coinbase, whose witness is the 32-byte zero reserved value:
// 6a24aa21a9ed ‖ SHA256d(witness merkle root ‖ 32 zero bytes).
func WitnessCommitmentScript(txs []TemplateTx) []byte {
	leaves := make([]chainhash.Hash, len(txs)+1) // leaves[0]: the coinbase wtxid is zero
	for i := range txs {
		leaves[i+1] = txs[i].WTxID
	}
	root := MerkleRoot(leaves)
	var pre [64]byte
	copy(pre[:32], root[:])
	sum := chainhash.DoubleHashH(pre[:])
	return append(witnessCommitmentPrefix[:], sum[:]...)
}

// MerkleRoot folds leaves into a Bitcoin merkle root (an odd level repeats its last item).
func MerkleRoot(leaves []chainhash.Hash) chainhash.Hash {
	if len(leaves) == 0 {
		return chainhash.Hash{}
	}
	level := append([]chainhash.Hash(nil), leaves...)
	var buf [64]byte
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			copy(buf[:32], level[i][:])
			copy(buf[32:], level[i+1][:])
			next = append(next, chainhash.DoubleHashH(buf[:]))
		}
		level = next
	}
	return level[0]
}

func parseBits(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("%q: want 8 hex digits", clip(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return binary.BigEndian.Uint32(b), nil
}

// CompactToTarget expands a compact "bits" value into a big-endian 256-bit target. Zero,
// negative and overflowing encodings are errors: no valid block has them.
func CompactToTarget(bits uint32) ([32]byte, error) {
	var out [32]byte
	mant := bits & 0x007fffff
	exp := int(bits >> 24)
	if bits&0x00800000 != 0 {
		return out, errors.New("negative target")
	}
	n := new(big.Int).SetUint64(uint64(mant))
	if exp <= 3 {
		n.Rsh(n, uint(8*(3-exp)))
	} else {
		n.Lsh(n, uint(8*(exp-3)))
	}
	if n.Sign() == 0 {
		return out, errors.New("zero target")
	}
	if n.BitLen() > 256 {
		return out, errors.New("target overflows 256 bits")
	}
	n.FillBytes(out[:])
	return out, nil
}

// clip shortens untrusted text quoted in an error.
func clip(s string) string { return clipN(s, 80) }

func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
