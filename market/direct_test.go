package market

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// startSeller runs one hashgrid CPU miner against the market until stop is called or
// the test ends.
func startSeller(t testing.TB, addr, user string, roll bool) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m, err := miner.New(miner.Config{URL: "stratum+tcp://" + addr, User: user, VersionRoll: roll, MaxRetryWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func dedicatedOf(tm *testMarket, id string) int {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return len(tm.orders[id].ded)
}

// TestSmallExtranonceOneConnectionPerSeller: a destination that gives 4 bytes of
// extranonce2 (no room for a seller's extranonce1 beside its extranonce2) and lets
// the market roll two version bits. Two sellers on one order each mine over a
// connection of their own, with that connection's extranonce1; the destination
// accepts every share on both connections; a seller that leaves has its connection
// closed; the order settles to the satoshi.
func TestSmallExtranonceOneConnectionPerSeller(t *testing.T) {
	const narrow = 0x00006000
	dest := startDestWith(t, 0.0003, 4, func(f *fakeDest) { f.mask = narrow })
	tm := startMarket(t, nil)
	const price = 1_000_000_000_000_000
	const deposit = 50_000_000
	acct, _ := tm.buyer(t, deposit)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "small", Price: price, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	users := sellerUsers()
	startSeller(t, tm.addr, users[0], true) // rolls versions
	stop2 := startSeller(t, tm.addr, users[1], false)
	k1, k2 := regtest.TestAddress()+"/rig1", regtest.TestAddressP2PKH()+"/rig2"
	waitFor(t, 60*time.Second, "both sellers' shares accepted", func() bool {
		return workerOf(tm, k1).Accepted >= 5 && workerOf(tm, k2).Accepted >= 5
	})
	if v := tm.view(t, acct, o.ID); v.Status != StatusActive || v.Sellers != 2 {
		t.Fatalf("order %s (%s) with %d sellers", v.Status, v.Reason, v.Sellers)
	}
	if n := dedicatedOf(tm, o.ID); n != 2 {
		t.Errorf("%d sellers' own connections, want 2", n)
	}
	if n := dest.conns(); n != 3 {
		t.Errorf("destination has %d connections, want 3 (the order's and one per seller)", n)
	}
	var on int
	for _, n := range dest.acceptedByConn() {
		if n > 0 {
			on++
		}
	}
	if on != 2 {
		t.Errorf("shares accepted on %d connections, want 2: %v", on, dest.acceptedByConn())
	}
	for _, k := range []string{k1, k2} {
		if w := workerOf(tm, k); w.Invalid != 0 || w.Rejected != 0 {
			t.Errorf("%s: %d invalid, %d rejected by the destination", k, w.Invalid, w.Rejected)
		}
	}
	if n := dest.rejects(); n != 0 {
		t.Errorf("destination rejected %d shares", n)
	}

	// A seller that leaves has its connection closed; the other carries on.
	stop2()
	waitFor(t, 10*time.Second, "the leaving seller's connection closed", func() bool { return dest.conns() == 2 })
	if n := dedicatedOf(tm, o.ID); n != 1 {
		t.Errorf("%d sellers' own connections after one left, want 1", n)
	}
	before := workerOf(tm, k1).Accepted
	waitFor(t, 30*time.Second, "the remaining seller's shares accepted", func() bool { return workerOf(tm, k1).Accepted >= before+3 })

	if _, err := tm.CancelOrder(acct, o.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "refund after cancel", func() bool {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return tm.orders[o.ID].rec.Closed
	})
	waitFor(t, 10*time.Second, "every connection to the destination closed", func() bool { return dest.conns() == 0 })

	v := tm.view(t, acct, o.ID)
	acc, work := dest.stats("small")
	tm.mu.Lock()
	mwork := tm.orders[o.ID].rec.Work
	workers := map[string]hashgrid.Work{}
	for k, w := range tm.workers {
		workers[k] = w.ValidWork
	}
	tm.mu.Unlock()
	if v.SharesAccepted != acc || mwork != work {
		t.Errorf("market counted %d accepted shares (work %v), destination %d (%v)", v.SharesAccepted, mwork.Float(), acc, work.Float())
	}
	ctx := context.Background()
	if err := tm.led.Check(ctx); err != nil {
		t.Fatal(err)
	}
	charge := chargeFor(price, work, 10_000)
	if v.Spent != charge || charge == 0 {
		t.Errorf("spent %d, want %d", v.Spent, charge)
	}
	var paid int64
	for k, w := range workers {
		got := earnedOf(t, tm.led, k)
		if want := chargeFor(price, w, 10_000-200); got != want || got == 0 {
			t.Errorf("seller %s earned %d, want %d", k, got, want)
		}
		paid += got
	}
	fees, _ := tm.led.Balance(ctx, acctFees)
	variance, _ := tm.led.Balance(ctx, acctVariance)
	if paid+fees+variance != charge {
		t.Errorf("sellers %d + fees %d + variance %d != charged %d", paid, fees, variance, charge)
	}
	if v.Refunded != 10_000_000-charge {
		t.Errorf("refunded %d, want %d", v.Refunded, 10_000_000-charge)
	}
	if rep := mustAudit(t, tm, o.ID); rep.Valid == 0 || len(rep.Problems) > 0 {
		t.Errorf("audit of the sample: %d valid, %v", rep.Valid, rep.Problems)
	}
}

func mustAudit(t testing.TB, tm *testMarket, id string) AuditReport {
	t.Helper()
	samples, err := tm.Shares(id)
	if err != nil {
		t.Fatal(err)
	}
	return Audit(samples)
}

// TestUpstreamsPerOrderLimit: with MaxUpstreamsPerOrder 2, an order on a destination
// with 4 bytes of extranonce2 takes one seller (the order's own connection and that
// seller's); the other seller goes to the next order instead, and both deliver.
// When the small order ends, its seller moves back to its own extranonce1.
func TestUpstreamsPerOrderLimit(t *testing.T) {
	small := startDestEN2(t, 0.0003, 4)
	wide := startDest(t, 0.0003)
	tm := startMarket(t, func(c *Config) { c.MaxUpstreamsPerOrder = 2 })
	acct, _ := tm.buyer(t, 50_000_000)
	ctx := context.Background()
	a, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: small.url(), PoolUser: "a", Price: 2_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: wide.url(), PoolUser: "b", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 60*time.Second, "both orders delivered", func() bool {
		return tm.view(t, acct, a.ID).SharesAccepted >= 3 && tm.view(t, acct, b.ID).SharesAccepted >= 3
	})
	for range 10 {
		if na, nb := sellersOn(tm, a.ID), sellersOn(tm, b.ID); na != 1 || nb != 1 {
			t.Fatalf("sellers on the small order %d, on the other %d; want 1 and 1", na, nb)
		}
		if n := small.conns(); n > 2 {
			t.Fatalf("%d connections to the small destination, limit 2", n)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The small order ends: its seller is told its own extranonce1 again and
	// delivers to the other order.
	if _, err := tm.CancelOrder(acct, a.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both sellers on the other order", func() bool { return sellersOn(tm, b.ID) == 2 })
	k1, k2 := regtest.TestAddress()+"/rig1", regtest.TestAddressP2PKH()+"/rig2"
	w1, w2 := workerOf(tm, k1), workerOf(tm, k2)
	waitFor(t, 30*time.Second, "both sellers' shares accepted there", func() bool {
		return workerOf(tm, k1).Accepted >= w1.Accepted+3 && workerOf(tm, k2).Accepted >= w2.Accepted+3
	})
	for _, k := range []string{k1, k2} {
		if w := workerOf(tm, k); w.Invalid != 0 || w.Rejected != 0 {
			t.Errorf("%s: %d invalid, %d rejected", k, w.Invalid, w.Rejected)
		}
	}
	waitFor(t, 10*time.Second, "the small destination's connections closed", func() bool { return small.conns() == 0 })
	if err := tm.led.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSmallExtranonceNeedsSetExtranonce: a seller that did not subscribe to
// mining.set_extranonce cannot mine on a destination whose extranonce2 is too small
// to share: it goes to the next order, even a cheaper one, and delivers there.
func TestSmallExtranonceNeedsSetExtranonce(t *testing.T) {
	const d = 0.00003
	small := startDestEN2(t, d, 4)
	wide := startDest(t, d)
	tm := rawMarket(t, d, nil)
	acct, _ := tm.buyer(t, 50_000_000)
	ctx := context.Background()
	a, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: small.url(), PoolUser: "a", Price: 2_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the small order live", func() bool {
		for _, bo := range tm.OrderBook().Orders {
			if bo.ID == a.ID {
				return bo.Alive
			}
		}
		return false
	})
	b, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: wide.url(), PoolUser: "b", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	s := dialSeller(t, tm.addr, regtest.TestAddress()+".plain", "")
	s.waitJob()
	if serr, _ := s.submit(s.mine(0)); serr != nil {
		t.Fatalf("share refused: %v", serr)
	}
	waitFor(t, 10*time.Second, "the share accepted on the cheaper order", func() bool { return tm.view(t, acct, b.ID).SharesAccepted == 1 })
	if na := sellersOn(tm, a.ID); na != 0 || small.conns() != 1 {
		t.Errorf("%d sellers and %d connections on the small order, want 0 and 1 (its own)", na, small.conns())
	}
}

// TestSellerConnectionRefused: a destination with 4 bytes of extranonce2 that takes
// one connection per user refuses a seller's own. The order stays active (its own
// connection is fine), the seller goes to the next order and delivers there, and the
// order does not dial again for every routing round.
func TestSellerConnectionRefused(t *testing.T) {
	small := startDestWith(t, 0.0003, 4, func(f *fakeDest) { f.maxConns = 1 })
	wide := startDest(t, 0.0003)
	tm := startMarket(t, nil)
	acct, _ := tm.buyer(t, 50_000_000)
	ctx := context.Background()
	a, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: small.url(), PoolUser: "a", Price: 2_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the small order live", func() bool {
		for _, bo := range tm.OrderBook().Orders {
			if bo.ID == a.ID {
				return bo.Alive
			}
		}
		return false
	})
	b, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: wide.url(), PoolUser: "b", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSeller(t, tm.addr, sellerUsers()[0], false)
	waitFor(t, 30*time.Second, "the seller delivering to the other order", func() bool { return tm.view(t, acct, b.ID).SharesAccepted >= 3 })
	if v := tm.view(t, acct, a.ID); v.Status != StatusActive || v.Sellers != 0 || v.SharesAccepted != 0 {
		t.Errorf("small order %s (%s), %d sellers, %d accepted", v.Status, v.Reason, v.Sellers, v.SharesAccepted)
	}
	if n := dedicatedOf(tm, a.ID); n != 0 {
		t.Errorf("%d sellers' connections left on the small order", n)
	}
	if n := small.conns(); n != 1 {
		t.Errorf("%d connections to the small destination, want its order's own", n)
	}
	time.Sleep(2 * time.Second) // two routing rounds, well within dedicatedRetry
	small.mu.Lock()
	tries := small.authTries
	small.mu.Unlock()
	if tries != 2 {
		t.Errorf("%d authorizations at the small destination, want 2 (the order's, the seller's refused one)", tries)
	}
}
