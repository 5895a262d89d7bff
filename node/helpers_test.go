package node_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
)

var update = flag.Bool("update", false, "rewrite testdata captures from a live btcd")

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

func payScript(tb testing.TB) []byte {
	tb.Helper()
	a, err := address.DecodeAddress(regtest.TestAddress(), &chaincfg.RegressionNetParams)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := txscript.PayToAddrScript(a)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// buildBlock makes a block from the template the way a pool does: BIP 34 height first in
// the coinbase script, the witness reserved value and commitment when the template has
// one, all template transactions, and a header solved against the template's target.
func buildBlock(tb testing.TB, tmpl *node.Template, pay []byte, tag string) *wire.MsgBlock {
	tb.Helper()
	sig, err := txscript.NewScriptBuilder().AddInt64(tmpl.Height).AddData([]byte(tag)).Script()
	if err != nil {
		tb.Fatal(err)
	}
	cb := wire.NewMsgTx(2)
	in := wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{}, wire.MaxPrevOutIndex), sig, nil)
	cb.AddTxIn(in)
	cb.AddTxOut(wire.NewTxOut(tmpl.CoinbaseValue, pay))
	if tmpl.WitnessCommitment != nil {
		cb.AddTxOut(wire.NewTxOut(0, tmpl.WitnessCommitment))
		cb.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)}
	}
	blk := &wire.MsgBlock{Transactions: []*wire.MsgTx{cb}}
	ids := []chainhash.Hash{cb.TxHash()}
	for _, tx := range tmpl.Transactions {
		var m wire.MsgTx
		if err := m.Deserialize(bytes.NewReader(tx.Data)); err != nil {
			tb.Fatal(err)
		}
		blk.Transactions = append(blk.Transactions, &m)
		ids = append(ids, tx.TxID)
	}
	blk.Header = wire.BlockHeader{
		Version:    tmpl.Version,
		PrevBlock:  tmpl.PrevHash,
		MerkleRoot: node.MerkleRoot(ids),
		Timestamp:  time.Unix(tmpl.CurTime, 0),
		Bits:       tmpl.Bits,
	}
	target := new(big.Int).SetBytes(tmpl.Target[:])
	for nonce := uint32(0); ; nonce++ {
		blk.Header.Nonce = nonce
		h := blk.Header.BlockHash()
		if hashNum(h).Cmp(target) <= 0 {
			return blk
		}
		if nonce == 1<<20 {
			tb.Fatal("no nonce found below the regtest target")
		}
	}
}

// hashNum reads a block hash as the little-endian number it is compared as.
func hashNum(h chainhash.Hash) *big.Int {
	var be [32]byte
	for i := range h {
		be[31-i] = h[i]
	}
	return new(big.Int).SetBytes(be[:])
}

// unsolve changes the nonce until the header hash is above the target.
func unsolve(blk *wire.MsgBlock, target [32]byte) {
	t := new(big.Int).SetBytes(target[:])
	for {
		blk.Header.Nonce++
		if hashNum(blk.Header.BlockHash()).Cmp(t) > 0 {
			return
		}
	}
}

// spendCoinbase makes a signed P2WPKH transaction spending the coinbase of the block at
// height (which paid regtest.TestAddress) and sends it to the node's mempool.
func spendCoinbase(tb testing.TB, ctx context.Context, c *node.Client, height int64, fee int64) *wire.MsgTx {
	tb.Helper()
	hash, err := c.BlockHash(ctx, height)
	if err != nil {
		tb.Fatal(err)
	}
	var blockHex string
	if err := c.Call(ctx, "getblock", []any{hash.String(), 0}, &blockHex); err != nil {
		tb.Fatal(err)
	}
	raw, err := hex.DecodeString(blockHex)
	if err != nil {
		tb.Fatal(err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		tb.Fatal(err)
	}
	prev := blk.Transactions[0]
	pay := payScript(tb)
	if !bytes.Equal(prev.TxOut[0].PkScript, pay) {
		tb.Fatalf("coinbase at %d pays %x, want %x", height, prev.TxOut[0].PkScript, pay)
	}
	amt := prev.TxOut[0].Value
	prevHash := prev.TxHash()
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&prevHash, 0), nil, nil))
	tx.AddTxOut(wire.NewTxOut(amt-fee, pay))
	fetcher := txscript.NewCannedPrevOutputFetcher(pay, amt)
	hashes := txscript.NewTxSigHashes(tx, fetcher)
	wit, err := txscript.WitnessSignature(tx, hashes, 0, amt, pay, txscript.SigHashAll, regtest.TestKey(), true)
	if err != nil {
		tb.Fatal(err)
	}
	tx.TxIn[0].Witness = wit
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		tb.Fatal(err)
	}
	var txid string
	if err := c.Call(ctx, "sendrawtransaction", []any{hex.EncodeToString(buf.Bytes())}, &txid); err != nil {
		tb.Fatal(err)
	}
	return tx
}

// rawTemplate fetches the unparsed getblocktemplate result.
func rawTemplate(tb testing.TB, ctx context.Context, c *node.Client) json.RawMessage {
	tb.Helper()
	var raw json.RawMessage
	if err := c.Call(ctx, "getblocktemplate", []any{map[string]any{"rules": []string{"segwit"}}}, &raw); err != nil {
		tb.Fatal(err)
	}
	return raw
}

// capture writes a live reply into testdata when -update is given.
func capture(tb testing.TB, name string, raw json.RawMessage) {
	tb.Helper()
	if !*update {
		return
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		tb.Fatal(err)
	}
	out.WriteByte('\n')
	if err := os.WriteFile(filepath.Join("testdata", name), out.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func asRejected(err error) (*node.RejectedError, bool) {
	var r *node.RejectedError
	ok := errors.As(err, &r)
	return r, ok
}
