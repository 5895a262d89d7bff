package controller_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/controller"
	"github.com/hashgrid/hashgrid/power/ercot"
	"github.com/hashgrid/hashgrid/power/minersim"
)

func TestSubsidySats(t *testing.T) {
	for _, c := range []struct {
		network string
		height  int64
		want    int64
	}{
		{"main", 0, 50e8},
		{"main", 209_999, 50e8},
		{"main", 210_000, 25e8},
		{"main", 629_999, 12.5e8},
		{"main", 630_000, 6.25e8},
		{"main", 839_999, 6.25e8},
		{"main", 840_000, 3.125e8}, // the halving of 20 April 2024
		{"mainnet", 900_000, 3.125e8},
		{"main", 64 * 210_000, 0},
		{"regtest", 149, 50e8},
		{"regtest", 150, 25e8},
		{"regtest", 300, 12.5e8},
	} {
		if got := controller.SubsidySats(c.network, c.height); got != c.want {
			t.Errorf("%s %d: got %d sat, want %d", c.network, c.height, got, c.want)
		}
	}
}

// TestHashpriceFromNode runs the controller against a real btcd (regtest) as the
// pool's node: the hashprice of its decisions must come from the node's difficulty,
// the subsidy of the next block by height (regtest halves every 150 blocks) and the
// fees of the transactions waiting for it, with the operator's BTC price, and not
// from the configured [bitcoin] figures; when the node stops answering, the last
// figures it gave stand.
func TestHashpriceFromNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := regtest.StartT(t)
	c := n.Client()
	if _, err := c.Generate(ctx, 99); err != nil {
		t.Fatal(err)
	}
	src := controller.NodeChain{Client: c}
	ch, err := src.Chain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.ChainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Network != "regtest" || ch.Height != info.Blocks+1 || ch.Difficulty != info.Difficulty || ch.SubsidySats != 50e8 || ch.FeesSats != 0 {
		t.Fatalf("empty mempool: got %+v, want regtest at %d, difficulty %v, 50 BTC, no fees", ch, info.Blocks+1, info.Difficulty)
	}
	// btcd keeps a template for up to a minute while only its mempool changes: each
	// transaction below is sent after a new block, so that the next template has it.
	if _, err := c.Generate(ctx, 1); err != nil { // block 1's coinbase matures
		t.Fatal(err)
	}
	const fee = 123_456
	spendCoinbase(t, ctx, c, 1, fee)
	if ch, err = src.Chain(ctx); err != nil || ch.FeesSats != fee || ch.SubsidySats != 50e8 {
		t.Fatalf("one transaction waiting: got %+v %v, want fees %d sat", ch, err, fee)
	}
	// Past the first regtest halving; the transaction is mined, the mempool empty.
	if _, err := c.Generate(ctx, 150-int(ch.Height)+1); err != nil {
		t.Fatal(err)
	}
	spendCoinbase(t, ctx, c, 2, 2*fee)
	if ch, err = src.Chain(ctx); err != nil || ch.Height <= 150 || ch.SubsidySats != 25e8 || ch.FeesSats != 2*fee {
		t.Fatalf("after the halving: got %+v %v, want 25 BTC and fees %d sat", ch, err, 2*fee)
	}

	// The controller's decisions weigh the node's hashprice.
	cfg, err := power.ReadConfig(strings.NewReader(siteTOML))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := minersim.Start(minersim.Config{Count: 6, Profiles: []minersim.Profile{{Name: "default", THs: 100, Watts: 3450}, {Name: "eco", THs: 80, Watts: 2240}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	cfg.Groups[0].Endpoints = fleet.Addrs()
	t0 := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)
	var ivs []power.Interval
	for i := range 4 {
		ivs = append(ivs, power.Interval{Start: t0.Add(time.Duration(i) * power.IntervalLength), Price: 2500})
	}
	wall := t0.Add(15 * time.Minute)
	feed, err := ercot.NewReplay(ivs, 1, t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.New(controller.Options{Config: cfg, Feed: feed, Chain: src, Clock: func() time.Time { return wall }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ctl.Step(ctx)
	if err != nil || st == nil {
		t.Fatalf("step: %+v %v", st, err)
	}
	want := power.Economics{BTCUSD: cfg.Bitcoin.BTCUSD, Difficulty: info.Difficulty, SubsidyBTC: 25, FeesBTCPerBlock: 2 * fee / 1e8}.HashpriceUSD(t0)
	configured := power.Economics{BTCUSD: cfg.Bitcoin.BTCUSD, Difficulty: cfg.Bitcoin.Difficulty, FeesBTCPerBlock: cfg.Bitcoin.FeesBTCPerBlock}.HashpriceUSD(t0)
	// What the controller weighed before: the node's difficulty only, with the
	// subsidy by date (mainnet's 3.125 BTC in 2025) and the configured fees.
	difficultyOnly := power.Economics{BTCUSD: cfg.Bitcoin.BTCUSD, Difficulty: info.Difficulty, FeesBTCPerBlock: cfg.Bitcoin.FeesBTCPerBlock}.HashpriceUSD(t0)
	if math.Abs(st.Hashprice-want) > 1e-9*want || st.Hashprice == configured || st.Hashprice == difficultyOnly {
		t.Fatalf("hashprice: got %v, want the node's %v (configured figures give %v, the node's difficulty alone %v)", st.Hashprice, want, configured, difficultyOnly)
	}
	t.Logf("hashprice $%.6g per TH/s per day from the node (regtest difficulty %v, 25 BTC, %d sat fees); configured figures $%.6g, node difficulty alone $%.6g",
		st.Hashprice, info.Difficulty, 2*fee, configured, difficultyOnly)
	// The node stops: the next decision keeps the node's last figures.
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	wall = wall.Add(15 * time.Minute)
	st, err = ctl.Step(ctx)
	if err != nil || st == nil {
		t.Fatalf("step without the node: %+v %v", st, err)
	}
	if math.Abs(st.Hashprice-want) > 1e-9*want {
		t.Errorf("hashprice without the node: got %v, want the node's last %v", st.Hashprice, want)
	}
}

// spendCoinbase sends the node a signed transaction spending the coinbase of the block
// at height (regtest.TestAddress's, as every block btcd mines here) with fee sat.
func spendCoinbase(t *testing.T, ctx context.Context, c *node.Client, height int64, fee int64) {
	t.Helper()
	hash, err := c.BlockHash(ctx, height)
	if err != nil {
		t.Fatal(err)
	}
	var blockHex string
	if err := c.Call(ctx, "getblock", []any{hash.String(), 0}, &blockHex); err != nil {
		t.Fatal(err)
	}
	raw, err := hex.DecodeString(blockHex)
	if err != nil {
		t.Fatal(err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	a, err := address.DecodeAddress(regtest.TestAddress(), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	pay, err := txscript.PayToAddrScript(a)
	if err != nil {
		t.Fatal(err)
	}
	cb := blk.Transactions[0]
	if !bytes.Equal(cb.TxOut[0].PkScript, pay) {
		t.Fatalf("coinbase at %d pays %x, want %x", height, cb.TxOut[0].PkScript, pay)
	}
	amt := cb.TxOut[0].Value
	prev := cb.TxHash()
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint((*chainhash.Hash)(&prev), 0), nil, nil))
	tx.AddTxOut(wire.NewTxOut(amt-fee, pay))
	hashes := txscript.NewTxSigHashes(tx, txscript.NewCannedPrevOutputFetcher(pay, amt))
	wit, err := txscript.WitnessSignature(tx, hashes, 0, amt, pay, txscript.SigHashAll, regtest.TestKey(), true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = wit
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	var txid string
	if err := c.Call(ctx, "sendrawtransaction", []any{hex.EncodeToString(buf.Bytes())}, &txid); err != nil {
		t.Fatal(err)
	}
}
