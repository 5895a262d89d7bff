package market

import (
	"context"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/stratum"
)

type testMarket struct {
	*Market
	led    *ledger.Ledger
	addr   string
	dir    string
	closed bool
}

func startMarket(t testing.TB, tweak func(*Config)) *testMarket {
	t.Helper()
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: filepath.Join(dir, "market.json"),
		SellerShareInterval: 500 * time.Millisecond, SellerStartDiff: 0.0002, SellerMinDiff: 1e-6, JobTimeout: 5 * time.Second, UpstreamTimeout: 3 * time.Second,
		SettleInterval: 200 * time.Millisecond, AllowPrivateDestinations: true, // the test pools are on loopback
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tm := &testMarket{Market: m, led: led, addr: l.Addr().String(), dir: dir}
	m.Start()
	var wg sync.WaitGroup
	wg.Go(func() { m.Serve(l) })
	t.Cleanup(func() {
		tm.stop()
		wg.Wait()
		led.Close()
	})
	return tm
}

func (tm *testMarket) stop() {
	if tm.closed {
		return
	}
	tm.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tm.Shutdown(ctx)
}

func (tm *testMarket) buyer(t testing.TB, deposit int64) (string, string) {
	t.Helper()
	id, key, err := tm.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.Deposit(context.Background(), id, deposit, "dep-"+id); err != nil {
		t.Fatal(err)
	}
	return id, key
}

// startSellers runs hashgrid CPU miners against the market until the test ends.
func startSellers(t testing.TB, addr string, users ...string) []*miner.Miner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ms []*miner.Miner
	for i, u := range users {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + addr, User: u, VersionRoll: i%2 == 0, MaxRetryWait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
		wg.Go(func() { m.Run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ms
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tm *testMarket) view(t testing.TB, acct, id string) OrderView {
	t.Helper()
	v, err := tm.Order(acct, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sellerUsers() []string {
	return []string{regtest.TestAddress() + ".rig1", regtest.TestAddressP2PKH() + ".rig2"}
}

// floorDiv returns floor(a·b/c) for a Work a.
func chargeFor(price int64, w hashgrid.Work, keepBps int64) int64 {
	n := new(big.Int).Mul(w.Big(), big.NewInt(price))
	n.Mul(n, big.NewInt(keepBps))
	n.Quo(n, bigK)
	n.Quo(n, big.NewInt(10_000))
	return n.Int64()
}

// TestMarketForwardsMeasuresAndSettles sends two sellers to one order and checks
// that the destination's records match the market's measurement share for share,
// and that the buyer's charge, the sellers' earnings and the fee balance to the
// satoshi, with the leftover refunded on cancel.
func TestMarketForwardsMeasuresAndSettles(t *testing.T) {
	dest := startDest(t, 0.0003)
	tm := startMarket(t, nil)
	const price = 1_000_000_000_000_000
	const deposit = 50_000_000
	acct, key := tm.buyer(t, deposit)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "buyer.one", Price: price, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 60*time.Second, "40 accepted shares", func() bool { return tm.view(t, acct, o.ID).SharesAccepted >= 40 })
	if _, err := tm.CancelOrder(acct, o.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "refund after cancel", func() bool {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return tm.orders[o.ID].rec.Closed
	})
	v := tm.view(t, acct, o.ID)
	acc, work := dest.stats("buyer.one")
	if v.SharesAccepted != acc {
		t.Errorf("market counted %d accepted shares, destination %d", v.SharesAccepted, acc)
	}
	tm.mu.Lock()
	mwork := tm.orders[o.ID].rec.Work
	workers := map[string]hashgrid.Work{}
	for k, w := range tm.workers {
		workers[k] = w.ValidWork
	}
	tm.mu.Unlock()
	if mwork != work {
		t.Errorf("market measured work %v, destination recorded %v", mwork.Float(), work.Float())
	}

	ctx := context.Background()
	if err := tm.led.Check(ctx); err != nil {
		t.Fatal(err)
	}
	wantCharge := chargeFor(price, work, 10_000)
	if v.Spent != wantCharge {
		t.Errorf("spent %d, want floor(price·hashes/K) = %d", v.Spent, wantCharge)
	}
	if wantCharge == 0 {
		t.Fatal("nothing charged")
	}
	esc, _ := tm.led.Balance(ctx, acctEscrow(o.ID))
	bal, _ := tm.Balance(ctx, acct)
	if esc != 0 || bal != deposit-wantCharge {
		t.Errorf("escrow %d, balance %d; want 0 and %d", esc, bal, deposit-wantCharge)
	}
	// Sellers earn every valid share at the market's difficulty; the fee is 2% of the
	// charge; the variance account takes the rest.
	var paid int64
	for k, w := range workers {
		got := earnedOf(t, tm.led, k)
		if want := chargeFor(price, w, 10_000-200); got != want || got == 0 {
			t.Errorf("seller %s earned %d, want %d for its valid work", k, got, want)
		}
		paid += got
	}
	fees, _ := tm.led.Balance(ctx, acctFees)
	if want := wantCharge - wantCharge*9_800/10_000; fees != want {
		t.Errorf("fees %d, want %d", fees, want)
	}
	variance, _ := tm.led.Balance(ctx, acctVariance)
	if paid+fees+variance != wantCharge {
		t.Errorf("sellers %d + fees %d + variance %d != charged %d", paid, fees, variance, wantCharge)
	}
	t.Logf("charged %d: sellers %d, fees %d, variance %d", wantCharge, paid, fees, variance)
	if v.Refunded != 10_000_000-wantCharge {
		t.Errorf("refunded %d, want %d", v.Refunded, 10_000_000-wantCharge)
	}

	// The sample re-hashes to the work it claims.
	samples, err := tm.Shares(o.ID)
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	rep := Audit(samples)
	if rep.Valid != len(samples) || len(rep.Problems) > 0 {
		t.Errorf("audit: %d of %d valid: %v", rep.Valid, len(samples), rep.Problems)
	}
	bad := append([]ShareSample(nil), samples...)
	bad[0].Nonce = "00000000"
	if rep := Audit(bad); rep.Valid != len(bad)-1 {
		t.Errorf("audit of a tampered sample: %d of %d valid, want one invalid", rep.Valid, len(bad))
	}
	checkSharesAccess(t, tm, acct, key, o.ID, samples)
}

// earnedOf returns what settlements credited a worker ("address/worker") in the
// ledger, and checks that all of it was made payable: the worker's own account holds
// nothing, and every settlement that credited it has its payable entry.
func earnedOf(t testing.TB, led ledger.Book, k string) int64 {
	t.Helper()
	ctx := context.Background()
	es, err := led.Entries(ctx, acctSeller(k), 0)
	if err != nil {
		t.Fatal(err)
	}
	var earned, moved int64
	for _, e := range es {
		for _, p := range e.Postings {
			if p.Account != acctSeller(k) {
				continue
			}
			switch {
			case strings.HasPrefix(e.Key, "market:settle:") && p.Amount > 0:
				earned += p.Amount
				if _, err := led.Entry(ctx, "market:payable:"+strings.TrimPrefix(e.Key, "market:settle:")); err != nil {
					t.Errorf("settlement %s has no payable entry: %v", e.Key, err)
				}
			case strings.HasPrefix(e.Key, "market:payable:") && p.Amount < 0:
				moved -= p.Amount
			default:
				t.Errorf("entry %s moves %d on %s", e.Key, p.Amount, p.Account)
			}
		}
	}
	if bal, _ := led.Balance(ctx, acctSeller(k)); bal != 0 || moved != earned {
		t.Errorf("%s: earned %d, %d made payable, %d left in its account", k, earned, moved, bal)
	}
	return earned
}

func sellersOn(tm *testMarket, id string) int {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return len(tm.orders[id].sellers)
}

// liveOrders reports whether every order of ids has its destination's job, so that
// sellers who come now are routed among all of them.
func liveOrders(tm *testMarket, ids ...string) bool {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	for _, id := range ids {
		if !tm.orders[id].liveLocked(tm.cfg.Now()) {
			return false
		}
	}
	return true
}

// TestMarketDeadPoolAndCancel kills the best order's pool: the order pauses with a
// reason, its sellers move to the next order, and nothing is charged for the dead
// time. Cancelling that order moves them on within a second.
func TestMarketDeadPoolAndCancel(t *testing.T) {
	destA := startDest(t, 0.0003)
	destB := startDest(t, 0.0003)
	tm := startMarket(t, nil)
	ctx := context.Background()
	acct, _ := tm.buyer(t, 100_000_000)
	a, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: destA.url(), PoolUser: "a", Price: 3_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: destB.url(), PoolUser: "b", Price: 2_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: destB.url(), PoolUser: "c", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	// A seller that came before the best order's destination answered would rightly
	// go to the next order meanwhile.
	waitFor(t, 10*time.Second, "the orders' destinations connected", func() bool { return liveOrders(tm, a.ID, b.ID, c.ID) })
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 30*time.Second, "both sellers on the best order and shares accepted", func() bool {
		return sellersOn(tm, a.ID) == 2 && tm.view(t, acct, a.ID).SharesAccepted >= 5
	})
	if n, _ := destB.stats("b"); n != 0 {
		t.Errorf("order b got %d shares while the better order had room", n)
	}

	destA.stop()
	waitFor(t, 5*time.Second, "order a paused", func() bool { return tm.view(t, acct, a.ID).Status == StatusPaused })
	va := tm.view(t, acct, a.ID)
	if !strings.Contains(va.Reason, "destination") {
		t.Errorf("pause reason %q does not name the destination", va.Reason)
	}
	waitFor(t, 5*time.Second, "sellers on order b", func() bool { return sellersOn(tm, b.ID) == 2 })
	waitFor(t, 30*time.Second, "shares accepted for b", func() bool { n, _ := destB.stats("b"); return n >= 5 })
	if va2 := tm.view(t, acct, a.ID); va2.Spent != va.Spent || va2.SharesAccepted != va.SharesAccepted {
		t.Errorf("dead order charged on: spent %d → %d, accepted %d → %d", va.Spent, va2.Spent, va.SharesAccepted, va2.SharesAccepted)
	}

	start := time.Now()
	if _, err := tm.CancelOrder(acct, b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "sellers on order c", func() bool { return sellersOn(tm, c.ID) == 2 })
	if el := time.Since(start); el > time.Second {
		t.Errorf("sellers moved %s after the cancel, want within a second", el)
	}
	waitFor(t, 30*time.Second, "shares accepted for c", func() bool { n, _ := destB.stats("c"); return n >= 3 })
	tm.settle(ctx)
	if err := tm.led.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID, c.ID} {
		esc, _ := tm.led.Balance(ctx, acctEscrow(id))
		if esc < 0 {
			t.Errorf("escrow of %s is %d", id, esc)
		}
	}
}

// TestMarketLimit measures the sellers, then limits the best order to a little more
// than the fastest of them: exactly one seller stays, the other goes to the next order.
func TestMarketLimit(t *testing.T) {
	dest := startDest(t, 0.0003)
	// Slices of at least half a period: the room left beside the fastest seller
	// (0.3 of it) is too small for one (TestTimeSlicedSmallOrder gives slices).
	tm := startMarket(t, func(c *Config) { c.SlicePeriod, c.MinSlice = 30*time.Second, 15*time.Second })
	ctx := context.Background()
	acct, _ := tm.buyer(t, 100_000_000)
	hi, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "hi", Price: 2_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	lo, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "lo", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 20*time.Second, "two sellers", func() bool { return sellersOn(tm, hi.ID) == 2 })
	time.Sleep(6 * time.Second) // let the speed estimates fill
	fastest, slowest := math.Inf(-1), math.Inf(1)
	tm.mu.Lock()
	for s := range tm.sellers {
		sp := s.speed(tm.cfg.Now())
		fastest, slowest = max(fastest, sp), min(slowest, sp)
	}
	tm.mu.Unlock()
	// Room for the fastest seller and a quarter of the other: too little for a slice
	// of it (MinSlice is half the period). The estimates move as shares come (on a
	// loaded machine the two CPU miners' speeds differ), so a seller may still be
	// sliced for part of a period: within one period, each order has one seller.
	limit := (fastest + slowest/4) / 1e12
	if _, err := tm.EditOrder(acct, hi.ID, OrderEdit{Limit: &limit}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 35*time.Second, "one seller on each order", func() bool { return sellersOn(tm, hi.ID) == 1 && sellersOn(tm, lo.ID) == 1 })
	waitFor(t, 90*time.Second, "shares for the lower order", func() bool { n, _ := dest.stats("lo"); return n >= 3 })
	book := tm.OrderBook()
	if len(book.Levels) != 2 || book.Levels[0].Price != 2_000_000_000_000_000 || book.Orders[0].ID != hi.ID {
		t.Errorf("order book %+v: want the higher price first", book)
	}
}

// TestMarketContractTransfer buys a contract, sells it mid-term to another account,
// and checks that the rest of the delivery goes to the new owner's pool.
func TestMarketContractTransfer(t *testing.T) {
	destA := startDest(t, 0.0003)
	destB := startDest(t, 0.0003)
	tm := startMarket(t, nil)
	ctx := context.Background()
	alice, _ := tm.buyer(t, 100_000_000)
	bob, _ := tm.buyer(t, 1_000)
	carol, _ := tm.buyer(t, 10_000_000)
	// A spot order without a limit, which the sellers work for (idle sellers have no
	// measured speed): a contract pushes it out, and pays its price plus the premium.
	const spotPrice = 1_000_000_000_000_000
	spot, err := tm.PlaceOrder(ctx, carol, OrderRequest{PoolURL: destB.url(), PoolUser: "carol", Price: spotPrice, Budget: 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, sellerUsers()...)
	capacity := func() float64 { // TH/s
		tm.mu.Lock()
		defer tm.mu.Unlock()
		var c float64
		for s := range tm.sellers {
			c += s.speed(tm.cfg.Now())
		}
		return c / 1e12
	}
	waitFor(t, 20*time.Second, "the sellers' speeds measured", func() bool { return capacity() > 0 })
	time.Sleep(5 * time.Second) // the speed estimates fill
	waitFor(t, 10*time.Second, "the spot order live", func() bool { return liveOrders(tm, spot.ID) })
	now := time.Now()
	capTH := capacity()
	if _, err := tm.QuoteContract(capTH*2, now, now.Add(time.Hour)); hashgrid.ErrorCode(err) != hashgrid.EUNAVAILABLE {
		t.Errorf("a contract for twice the sellers' capacity: %v, want refused as unavailable", err)
	}
	speed := math.Round(capTH/2*1e9) / 1e9
	q, err := tm.QuoteContract(speed, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(spotPrice + spotPrice*500/10_000); q.Price != want || q.Displaced != spotPrice || q.Capacity <= 0 {
		t.Errorf("quote %+v: want price %d, the spot order's price plus 5%%", q, want)
	}
	if _, err := tm.BuyContract(ctx, alice, ContractRequest{Speed: speed, Start: now, End: now.Add(time.Hour), Price: q.Price - 1, PoolURL: destA.url(), PoolUser: "alice"}); err == nil {
		t.Error("a contract below the quote was accepted")
	}
	c, err := tm.BuyContract(ctx, alice, ContractRequest{Speed: speed, Start: now, End: now.Add(time.Hour), Price: q.Price, PoolURL: destA.url(), PoolUser: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if want := contractTotal(q.Price, speed, time.Hour); c.Budget != want || want != q.Total {
		t.Errorf("contract escrow %d, want %d (quoted %d)", c.Budget, want, q.Total)
	}
	// What it reserved is no longer there for another contract over the same term.
	if _, err := tm.QuoteContract(capTH-speed/2, now.Add(30*time.Minute), now.Add(2*time.Hour)); hashgrid.ErrorCode(err) != hashgrid.EUNAVAILABLE {
		t.Errorf("a second contract over reserved capacity: %v, want refused as unavailable", err)
	}
	waitFor(t, 30*time.Second, "delivery to alice", func() bool { n, _ := destA.stats("alice"); return n >= 5 })
	if _, err := tm.AcceptTransfer(ctx, bob, c.ID, Destination{URL: destB.url(), User: "bob"}); err == nil {
		t.Error("accepted a transfer nobody offered")
	}
	if _, err := tm.OfferTransfer(alice, c.ID, bob, 500); err != nil {
		t.Fatal(err)
	}
	// The account a contract is offered to sees its terms, not where it delivers.
	if ov, err := tm.Order(bob, c.ID); err != nil || ov.PoolURL != "" || ov.PoolUser != "" {
		t.Errorf("the offeree sees the contract as %+v (%v), want no destination", ov, err)
	}
	v, err := tm.AcceptTransfer(ctx, bob, c.ID, Destination{URL: destB.url(), User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Account != bob || len(v.Segments) != 2 {
		t.Fatalf("after transfer: %+v", v)
	}
	aliceShares, _ := destA.stats("alice")
	waitFor(t, 30*time.Second, "delivery to bob", func() bool { n, _ := destB.stats("bob"); return n >= 5 })
	v = tm.view(t, bob, c.ID)
	if v.Segments[1].Accepted == 0 || v.Segments[0].Accepted < aliceShares {
		t.Errorf("segments %+v", v.Segments)
	}
	if n, _ := destA.stats("alice"); n > aliceShares+3 {
		t.Errorf("alice's pool kept receiving shares after the transfer: %d → %d", aliceShares, n)
	}
	ba, _ := tm.Balance(ctx, alice)
	bb, _ := tm.Balance(ctx, bob)
	if ba != 100_000_000-c.Budget+500 || bb != 500 {
		t.Errorf("balances alice %d bob %d", ba, bb)
	}
	if _, err := tm.Order(alice, c.ID); err == nil {
		t.Error("the old owner still sees the contract as hers")
	}
	// Each owner audits the shares delivered to its own pool, and only those.
	all, _ := tm.Shares(c.ID)
	coinb := map[string]int{} // coinb1 → segment
	for _, s := range all {
		coinb[s.Coinb1] = s.segment
	}
	for i, who := range []string{alice, bob} {
		got, err := tm.SharesFor(who, c.ID)
		if err != nil || len(got) == 0 {
			t.Fatalf("segment %d's owner gets %d samples: %v", i, len(got), err)
		}
		for _, s := range got {
			if seg, ok := coinb[s.Coinb1]; !ok || seg != i {
				t.Fatalf("segment %d's owner sees a share delivered for segment %d", i, seg)
			}
		}
		if rep := Audit(got); rep.Valid != len(got) {
			t.Errorf("segment %d's owner: %d of %d samples verify", i, rep.Valid, len(got))
		}
	}
}

// TestMarketBudget runs an order with a budget of a few shares: it is exhausted,
// never charged past its budget, and its escrow never goes negative.
func TestMarketBudget(t *testing.T) {
	dest := startDest(t, 0.0003)
	tm := startMarket(t, nil)
	ctx := context.Background()
	acct, _ := tm.buyer(t, 100_000_000)
	// One share of difficulty 0.0003 is about 1.29e6 hashes: at this price ≈ 1490 sat.
	const price = 100_000_000_000_000_000
	o, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "small", Price: price, Budget: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 30*time.Second, "budget spent", func() bool { return tm.view(t, acct, o.ID).Status == StatusExhausted })
	// A share forwarded before the budget ran out may still be answered (its price was
	// reserved): settle until the escrow and the order agree.
	var v OrderView
	waitFor(t, 10*time.Second, "the escrow settled", func() bool {
		tm.settle(ctx)
		v = tm.view(t, acct, o.ID)
		esc, _ := tm.led.Balance(ctx, acctEscrow(o.ID))
		return esc == v.Budget-v.Spent
	})
	if v.Spent > v.Budget || v.SharesAccepted == 0 {
		t.Errorf("spent %d of %d with %d shares", v.Spent, v.Budget, v.SharesAccepted)
	}
	_, work := dest.stats("small")
	if want := chargeFor(price, work, 10_000); v.Spent != want {
		t.Errorf("spent %d, destination's work prices at %d", v.Spent, want)
	}
	esc, _ := tm.led.Balance(ctx, acctEscrow(o.ID))
	if esc != v.Budget-v.Spent {
		t.Errorf("escrow %d, want %d", esc, v.Budget-v.Spent)
	}
	if _, err := tm.RefillOrder(ctx, acct, o.ID, 200_000_000); err == nil {
		t.Error("refilled beyond the balance")
	}
	if _, err := tm.RefillOrder(ctx, acct, o.ID, 20_000); err != nil {
		t.Fatal(err)
	}
	if v := tm.view(t, acct, o.ID); v.Status != StatusActive || v.Budget != 30_000 {
		t.Errorf("after refill: %s budget %d", v.Status, v.Budget)
	}
}

func TestAuthenticate(t *testing.T) {
	tm := startMarket(t, nil)
	id, key, err := tm.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tm.Authenticate(key); err != nil || got != id {
		t.Fatalf("Authenticate(good key) = %q, %v", got, err)
	}
	for _, bad := range []string{"", "hgk_", key + "0", key[:len(key)-1], strings.Replace(key, id, "a999", 1), "Bearer " + key} {
		if _, err := tm.Authenticate(bad); hashgrid.ErrorCode(err) != hashgrid.EUNAUTHORIZED {
			t.Errorf("Authenticate(%q) = %v, want unauthorized", bad, err)
		}
	}
	// The state file holds no key.
	tm.stop()
	b, _ := readFile(filepath.Join(tm.dir, "market.json"))
	if strings.Contains(b, key[len("hgk_"+id+"_"):]) {
		t.Error("state file contains the key's secret")
	}
}

func TestPlaceOrderValidation(t *testing.T) {
	tm := startMarket(t, nil)
	acct, _ := tm.buyer(t, 2000)
	ctx := context.Background()
	good := OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 1, Budget: 1000}
	cases := []struct {
		name string
		edit func(*OrderRequest)
		code string
	}{
		{"bad url", func(r *OrderRequest) { r.PoolURL = "http://x:1" }, hashgrid.EINVALID},
		{"no user", func(r *OrderRequest) { r.PoolUser = "" }, hashgrid.EINVALID},
		{"zero price", func(r *OrderRequest) { r.Price = 0 }, hashgrid.EINVALID},
		{"negative limit", func(r *OrderRequest) { r.Limit = -1 }, hashgrid.EINVALID},
		{"no budget", func(r *OrderRequest) { r.Budget = 0 }, hashgrid.EINVALID},
		{"below the minimum amount", func(r *OrderRequest) { r.Budget = 999 }, hashgrid.EINVALID},
		{"over balance", func(r *OrderRequest) { r.Budget = 2001 }, hashgrid.ECONFLICT},
	}
	for _, c := range cases {
		r := good
		c.edit(&r)
		_, err := tm.PlaceOrder(ctx, acct, r)
		if got := hashgrid.ErrorCode(err); got != c.code {
			t.Errorf("%s: got %q (%v), want %q", c.name, got, err, c.code)
		}
	}
	if n := len(tm.Orders(acct)); n != 0 {
		t.Errorf("%d orders left behind by failed placements", n)
	}
	// An unreachable pool pauses the order with a reason.
	o, err := tm.PlaceOrder(ctx, acct, good)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "order paused", func() bool { return tm.view(t, acct, o.ID).Status == StatusPaused })
	if r := tm.view(t, acct, o.ID).Reason; !strings.Contains(r, "unreachable") {
		t.Errorf("reason %q", r)
	}
}

// TestNewMJobExtranonceSizes: a destination's extranonce2 with room for a seller's
// extranonce1 and extranonce2 is shared (extranonce1 folded into coinb1); one with
// room for the extranonce2 only is direct (coinb1 as the destination sent it); a
// smaller one is refused.
func TestNewMJobExtranonceSizes(t *testing.T) {
	w := stratum.Work{Notify: &stratum.Notify{PrevHash: strings.Repeat("0", 64), Version: "20000000", NBits: "1d00ffff", NTime: "00000000"},
		Difficulty: 1, Extranonce1: []byte{1, 2, 3, 4}, Extranonce2Size: 3}
	if _, err := newMJob("1", w, 4); err == nil || !strings.Contains(err.Error(), "extranonce2") {
		t.Errorf("newMJob with 3-byte extranonce2: %v, want an extranonce2 error", err)
	}
	for _, c := range []struct {
		size, pad, coinb1 int
		direct            bool
	}{{4, 0, 0, true}, {7, 3, 0, true}, {8, 0, 4, false}, {10, 2, 4, false}} {
		w.Extranonce2Size = c.size
		j, err := newMJob("1", w, 4)
		if err != nil {
			t.Fatal(err)
		}
		if j.direct != c.direct || j.pad != c.pad || len(j.coinb1) != c.coinb1 || len(j.coinb2) != c.pad {
			t.Errorf("extranonce2 %d: direct %v pad %d coinb1 %x coinb2 %x", c.size, j.direct, j.pad, j.coinb1, j.coinb2)
		}
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	cfg := Config{Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: filepath.Join(dir, "market.json"), AllowPrivateDestinations: true}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, key, _ := m.CreateAccount()
	m.Deposit(context.Background(), id, 5000, "d1")
	o, err := m.PlaceOrder(context.Background(), id, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 5, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	m.Shutdown(context.Background())
	// A refill posted to the ledger but never saved in the state file is found again.
	if _, err := led.Post(context.Background(), ledger.Tx{Key: "market:fund:" + o.ID + ":1", Postings: []ledger.Posting{
		{Account: acctBuyer(id), Amount: -300}, {Account: acctEscrow(o.ID), Amount: 300}}}); err != nil {
		t.Fatal(err)
	}
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Shutdown(context.Background())
	if got, err := m2.Authenticate(key); err != nil || got != id {
		t.Fatalf("key after restart: %q %v", got, err)
	}
	v, err := m2.Order(id, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Budget != 1300 {
		t.Errorf("budget after restart %d, want 1300", v.Budget)
	}
}

// TestEarlierEarningsMadePayable: earnings a market posted before settlements made
// them payable (per-worker accounts holding money, in a settlement the state file never
// saw) are moved to the addresses' payable balances when the market opens, once: a
// second start moves nothing, and the books balance.
func TestEarlierEarningsMadePayable(t *testing.T) {
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	ctx := context.Background()
	cfg := Config{Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: filepath.Join(dir, "market.json"), AllowPrivateDestinations: true}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := m.CreateAccount()
	m.Deposit(ctx, id, 5000, "d1")
	o, err := m.PlaceOrder(ctx, id, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 5, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	m.Shutdown(ctx)
	a1, a2 := regtest.TestAddress(), regtest.TestAddressP2PKH()
	if _, err := led.Post(ctx, ledger.Tx{Key: "market:settle:" + o.ID + ":0", Postings: []ledger.Posting{
		{Account: acctEscrow(o.ID), Amount: -1000}, {Account: acctFees, Amount: 20},
		{Account: acctSeller(a1 + "/r1"), Amount: 600}, {Account: acctSeller(a1 + "/r2"), Amount: 300}, {Account: acctSeller(a2 + "/r1"), Amount: 80}}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for addr, want := range map[string]int64{a1: 900, a2: 80} {
			if got, _ := led.Balance(ctx, acctPayable(addr)); got != want {
				t.Errorf("%s payable %d, want %d", addr, got, want)
			}
			sv, err := m.Seller(ctx, addr)
			if err != nil || sv.Earned != want || sv.Payable != want {
				t.Errorf("seller view of %s: %+v (%v), want %d earned and payable", addr, sv, err, want)
			}
		}
		sellers, _ := led.Balances(ctx, "market:seller:")
		for a, b := range sellers {
			if b != 0 {
				t.Errorf("%s still holds %d", a, b)
			}
		}
		if err := led.Check(ctx); err != nil {
			t.Fatal(err)
		}
		m.Shutdown(ctx)
	}
	if es, _ := led.Entries(ctx, acctPayable(a1), 0); len(es) != 2 {
		t.Errorf("%d entries credit %s, want one per worker", len(es), a1)
	}
}

// TestSettlementWithoutChargeReconciled: a settlement that charged the buyer nothing
// (sellers paid out of the variance account) has no escrow posting. Posted but not
// saved before a crash, it is still found when the market opens again: the order's
// next settlement takes the next key, and the seller's earnings count it once.
func TestSettlementWithoutChargeReconciled(t *testing.T) {
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	ctx := context.Background()
	cfg := Config{Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: filepath.Join(dir, "market.json"), AllowPrivateDestinations: true}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := m.CreateAccount()
	m.Deposit(ctx, id, 5000, "d1")
	o, err := m.PlaceOrder(ctx, id, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 5, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	m.Shutdown(ctx)
	k := regtest.TestAddress() + "/r1"
	settle := ledger.Tx{Key: settleKey(o.ID, 0), Postings: []ledger.Posting{{Account: acctVariance, Amount: -70}, {Account: acctSeller(k), Amount: 70}}}
	pay, _ := payableTx(settle.Key, "", settle.Postings)
	if _, err := led.PostAll(ctx, []ledger.Tx{settle, pay}); err != nil {
		t.Fatal(err)
	}
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Shutdown(ctx)
	m2.mu.Lock()
	seq, paid := m2.orders[o.ID].rec.SettleSeq, m2.orders[o.ID].rec.SellerPaid[k]
	m2.mu.Unlock()
	if seq != 1 || paid != 70 {
		t.Errorf("after restart: settle seq %d, seller paid %d; want 1 and 70", seq, paid)
	}
	if sv, err := m2.Seller(ctx, regtest.TestAddress()); err != nil || sv.Earned != 70 || sv.Payable != 70 {
		t.Errorf("seller view %+v (%v)", sv, err)
	}
}

func TestContractTotal(t *testing.T) {
	for _, c := range []struct {
		price int64
		speed float64
		d     time.Duration
		want  int64
	}{
		{86_400_000, 1, 24 * time.Hour, 86_400}, // sat per PH/s per day, TH/s
		{86_400, 1, 24 * time.Hour, 87},         // 86.4 rounds up
		{1000, 1, 24 * time.Hour, 1},
		{1, 1, time.Hour, 1}, // 1/24000 rounds up
		{1_000_000_000, 0.5, 12 * time.Hour, 250_000},
		{1_000_000_000_000, 1e-9, 24 * time.Hour, 1},   // 1 kH/s, the smallest speed
		{1_000_000_000_000, 1.4e-9, 24 * time.Hour, 1}, // counted in whole kH/s
	} {
		if got := contractTotal(c.price, c.speed, c.d); got != c.want {
			t.Errorf("contractTotal(%d, %g, %s) = %d, want %d", c.price, c.speed, c.d, got, c.want)
		}
	}
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

// TestPriceDecreaseThrottled: raising a price is free; lowering it is allowed once per
// PriceDecreaseInterval and by at most MaxPriceDecreaseBps, on the market's clock.
func TestPriceDecreaseThrottled(t *testing.T) {
	var mu sync.Mutex
	offset := time.Duration(0)
	tm := startMarket(t, func(c *Config) {
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
	})
	acct, _ := tm.buyer(t, 100_000)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 10_000, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	price := func(p int64) error {
		_, err := tm.EditOrder(acct, o.ID, OrderEdit{Price: &p})
		return err
	}
	steps := []struct {
		advance time.Duration
		price   int64
		ok      bool
		what    string
	}{
		{0, 20_000, true, "raise"},
		{0, 17_999, false, "fall by more than 10%"},
		{0, 18_000, true, "fall by 10%"},
		{0, 17_900, false, "fall again at once"},
		{0, 30_000, true, "raise again at once"},
		{9 * time.Minute, 29_000, false, "fall again after 9 minutes"},
		{time.Minute, 27_000, true, "fall again after 10 minutes"},
	}
	for _, s := range steps {
		mu.Lock()
		offset += s.advance
		mu.Unlock()
		err := price(s.price)
		if s.ok != (err == nil) || (err != nil && hashgrid.ErrorCode(err) != hashgrid.ECONFLICT) {
			t.Errorf("%s to %d: %v, want ok=%v", s.what, s.price, err, s.ok)
		}
	}
	if v := tm.view(t, acct, o.ID); v.Price != 27_000 {
		t.Errorf("price %d, want 27000", v.Price)
	}
}

// TestTimeSlicedSmallOrder: one seller, an order limited to about half its speed at
// the better price and an unlimited one below. The seller is faster than the small
// order, so whole-seller routing gave it nothing; with time slices the seller spends
// part of every period on it and the rest on the other order, and what the small
// order receives stays near its limit.
func TestTimeSlicedSmallOrder(t *testing.T) {
	dest := startDest(t, 0.0003)
	tm := startMarket(t, func(c *Config) {
		c.SlicePeriod, c.MinSlice, c.RouteInterval = 4*time.Second, 500*time.Millisecond, 100*time.Millisecond
	})
	ctx := context.Background()
	acct, _ := tm.buyer(t, 100_000_000)
	small, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "small", Price: 2_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	big, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "big", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, regtest.TestAddress()+".rig1")
	waitFor(t, 20*time.Second, "the seller on the better order", func() bool { return sellersOn(tm, small.ID) == 1 })
	time.Sleep(6 * time.Second) // the seller's speed estimate fills
	var speed float64
	tm.mu.Lock()
	for s := range tm.sellers {
		speed = s.speed(tm.cfg.Now())
	}
	tm.mu.Unlock()
	if speed <= 0 {
		t.Fatal("no speed estimate for the seller")
	}
	limit := speed * 0.5 / 1e12
	if _, err := tm.EditOrder(acct, small.ID, OrderEdit{Limit: &limit}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	s0, w0 := dest.stats("small")
	b0, v0 := dest.stats("big")
	// Both orders get the seller in turn, several times.
	var onSmall, onBig int
	var expect float64 // Σ of the share of time the seller's speed estimate then gave the small order
	for range 120 {    // 12 s: three periods
		switch {
		case sellersOn(tm, small.ID) == 1:
			onSmall++
		case sellersOn(tm, big.ID) == 1:
			onBig++
		}
		tm.mu.Lock()
		for s := range tm.sellers {
			if sp := s.speed(tm.cfg.Now()); sp > 0 {
				expect += min(1, limit*1e12/sp)
			}
		}
		tm.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	s1, w1 := dest.stats("small")
	b1, v1 := dest.stats("big")
	if onSmall < 20 || onBig < 20 {
		t.Fatalf("seller sampled on the small order %d times, on the other %d, of 120: not sliced", onSmall, onBig)
	}
	if s1 == s0 || b1 == b0 {
		t.Fatalf("shares while sliced: small %d, big %d", s1-s0, b1-b0)
	}
	// The small order's share of the seller's time is its limit over the seller's
	// speed as the market estimates it (0.5 when the speed holds; more when a loaded
	// machine slows the miner), measured by where the seller was.
	want := expect / 120
	if f := float64(onSmall) / float64(onSmall+onBig); f < want-0.2 || f > want+0.2 {
		t.Errorf("seller on the small order %.0f%% of the time, want about %.0f%% (its limit over the seller's estimated speed)", 100*f, 100*want)
	}
	t.Logf("small order: %d shares (%.4g work), big: %d shares (%.4g work); time on small %d/%d",
		s1-s0, w1.Float()-w0.Float(), b1-b0, v1.Float()-v0.Float(), onSmall, onSmall+onBig)
	if err := tm.led.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
