package payout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
)

func sum(outs []pool.Output) (n int64) {
	for _, o := range outs {
		n += o.Value
	}
	return n
}

// TestSoloOutputs: each finder gets its own coinbase paying itself, less the fee to
// the pool; the block is credited to the finder as paid directly.
func TestSoloOutputs(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{Scheme: SOLO, Split: SplitParams{FeeBps: 200}})
	finder := testMiners[1]
	outs, key, err := h.svc.Outputs(tmpl(5, 1000), 1000, finder)
	if err != nil || key != finder || sum(outs) != 1000 || len(outs) != 2 || outs[0].Value != 980 {
		t.Fatalf("solo outputs %+v key %q err %v", outs, key, err)
	}
	want, _ := pool.AddressScript(finder, h.svc.cfg.Network)
	if string(outs[0].Script) != string(want) {
		t.Error("solo coinbase does not pay the finder")
	}
	if _, _, err := h.svc.Outputs(tmpl(5, 1000), 1000, "not-an-address"); err == nil {
		t.Error("bad finder address: no error")
	}
	bh := h.chain.mine(1, outs)
	h.putBlock(t, hashgrid.Block{Hash: bh, Height: 5, Reward: 1000, Address: finder, Status: hashgrid.BlockAccepted})
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	h.putBlock(t, hashgrid.Block{Hash: bh, Height: 5, Reward: 1000, Address: finder, Status: hashgrid.BlockConfirmed})
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := balance(t, h.led, MinerAccount(finder, "paid")); got != 980 {
		t.Errorf("finder paid %d, want 980", got)
	}
	if got := balance(t, h.led, AcctFee); got != 20 {
		t.Errorf("pool fee %d, want 20", got)
	}
}

// TestPPSOutputsAndRates: PPS pays the pool's address; the first template of a height
// fixes its rate; FPPS averages the fees of recent heights.
func TestPPSOutputsAndRates(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{Scheme: FPPS, FeeWindow: 2})
	tp := func(height, subsidy, fees int64) *node.Template {
		return &node.Template{Height: height, CoinbaseValue: subsidy + fees, Bits: regtestBits, Transactions: []node.TemplateTx{{Fee: fees}}}
	}
	for _, tt := range []*node.Template{tp(1, 100, 10), tp(1, 100, 99), tp(2, 100, 30), tp(3, 50, 50)} {
		outs, key, err := h.svc.Outputs(tt, tt.CoinbaseValue, "x")
		if err != nil || key != "" || len(outs) != 1 || outs[0].Value != tt.CoinbaseValue {
			t.Fatalf("outputs %+v %q %v", outs, key, err)
		}
	}
	for _, tt := range []struct {
		height        int64
		subsidy, fees int64
		ok            bool
	}{{1, 100, 10, true}, {2, 100, 20, true}, {3, 50, 40, true}, {4, 0, 0, false}} {
		r, ok, err := h.svc.db.rate(ctx, tt.height, 2)
		if err != nil || ok != tt.ok || (ok && (r.Subsidy != tt.subsidy || r.Fees != tt.fees)) {
			t.Errorf("rate(%d) = %+v %v %v, want subsidy %d fees %d ok %v", tt.height, r, ok, err, tt.subsidy, tt.fees, tt.ok)
		}
	}
}

// TestPPSRunCreditsOnce runs the PPS consumer: shares from before its first start are
// not its to pay, every later share is credited once, and a restart credits nothing
// again.
func TestPPSRunCreditsOnce(t *testing.T) {
	h := newHarness(t, Config{Scheme: PPS, Funding: 1000_0000_0000, SnapshotInterval: 10 * time.Millisecond, Interval: 10 * time.Millisecond})
	before := h.share(t, testMiners[0], 1, 1)
	h.svc.Outputs(tmpl(1, 50_0000_0000), 50_0000_0000, "")
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.svc.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	stop := run()
	// Wait until the consumer has saved its starting point, then add shares.
	waitUntil(t, func() bool { _, started, _, _ := h.svc.db.ppsState(context.Background()); return started })
	var seqs []uint64
	for i := 0; i < 5; i++ {
		seqs = append(seqs, h.share(t, testMiners[i%2], 1, 1).Seq)
	}
	waitUntil(t, func() bool {
		_, err := h.led.Entry(context.Background(), fmt.Sprintf("pps:%d", seqs[4]))
		return err == nil
	})
	stop()
	if _, err := h.led.Entry(context.Background(), fmt.Sprintf("pps:%d", before.Seq)); err == nil {
		t.Error("a share from before PPS started was credited")
	}
	total := func() int64 {
		return balance(t, h.led, MinerAccount(testMiners[0], "balance")) + balance(t, h.led, MinerAccount(testMiners[1], "balance"))
	}
	got := total()
	// One share of Diff 1 unit at regtest difficulty (about 2 units) is worth about
	// half a block.
	if got < 5*24_0000_0000 || got > 5*26_0000_0000 {
		t.Errorf("5 shares credited %d sat", got)
	}
	stop = run()
	time.Sleep(100 * time.Millisecond) // several polls: nothing new to credit
	stop()
	if total() != got {
		t.Errorf("restart changed credits from %d to %d", got, total())
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
