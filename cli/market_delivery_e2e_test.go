package cli

import (
	"context"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// TestMarketDeliveryMatchesPools: two destination pools on btcd regtest, one of them
// with a 4-byte extranonce2 and a version mask narrower than the miners ask for; two
// spot orders, each limited to less than one seller's speed, so sellers are shared
// between them in time slices (and the small-extranonce order opens a connection per
// slice); three hashgrid CPU miners as sellers. After the run, the work the market
// measured for each order equals, within 2%, what the order's destination pool
// itself recorded for the order's user, and the market's books balance.
//
// The run lasts one minute; HASHGRID_MARKET_SOAK (a duration, e.g. 10m) makes it
// longer (docs/benchmarks.md has a 10-minute run).
func TestMarketDeliveryMatchesPools(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	run := time.Minute
	if v := os.Getenv("HASHGRID_MARKET_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("HASHGRID_MARKET_SOAK: %v", err)
		}
		run = d
	}
	addr1, addr2 := regtest.TestAddress(), regtest.TestAddressP2PKH()
	p1, stopP1, p2, stopP2 := startDestinationPools(t, "/delivery/")
	defer stopP1()
	defer stopP2()
	mr, stopMarket := startMarket(t, MarketConfig{Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Network: "regtest",
		FeeBps: 200, SellerShareInterval: time.Second, LogLevel: "info", AdminToken: "e2e-admin", AllowPrivateDestinations: true})
	defer stopMarket()
	c := marketClient{t: t, base: "http://" + mr.API}
	var buyer market.AccountCreated
	c.must("POST", "/api/v1/accounts", "", nil, &buyer)
	c.must("POST", "/api/v1/admin/deposits", "e2e-admin", market.DepositRequest{Account: buyer.ID, Amount: 15_000_000_000, Reference: "d1"}, nil)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i, u := range []string{addr1 + ".s1", addr2 + ".s2", addr1 + ".s3"} {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + mr.Stratum, User: u, VersionRoll: i != 1, MaxRetryWait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { m.Run(ctx) })
	}
	place := func(pool PoolReady, user string, price int64, limit float64) market.OrderView {
		var v market.OrderView
		c.must("POST", "/api/v1/orders", buyer.APIKey, market.OrderRequest{PoolURL: "stratum+tcp://" + pool.Stratum, PoolUser: user,
			PoolPassword: "d=0.0002", Price: price, Limit: limit, Budget: 4_000_000_000}, &v)
		return v
	}
	// A first order without a limit measures the sellers; then the two small ones.
	userM := addr1 + ".measure"
	M := place(p1, userM, 1_000_000_000_000_000, 0)
	waitFor(t, 60*time.Second, "the sellers measured", func() bool {
		return c.sellers(M.ID) == 3 && c.order(buyer.APIKey, M.ID).SharesAccepted >= 20
	})
	time.Sleep(5 * time.Second)
	var speed float64 // TH/s, all three sellers
	for _, o := range c.book().Orders {
		if o.ID == M.ID {
			speed = o.Speed
		}
	}
	if speed <= 0 {
		t.Fatal("no measured speed in the order book")
	}
	c.must("POST", "/api/v1/orders/"+M.ID+"/cancel", buyer.APIKey, nil, nil)
	// Each small order wants half a seller: every seller that serves one splits its
	// time; the rest of the sellers' time is idle (no other order).
	userA, userB := addr1+".sliceA", addr2+".sliceB"
	A := place(p1, userA, 3_000_000_000_000_000, speed/6)
	B := place(p2, userB, 2_000_000_000_000_000, speed/6)
	time.Sleep(run)
	// On a loaded machine the CPU miners are slow: go on (at most two minutes more)
	// until each order has enough shares for the comparison to mean something.
	waitFor(t, 2*time.Minute, "ten shares delivered to each order", func() bool {
		return c.order(buyer.APIKey, A.ID).SharesAccepted >= 10 && c.order(buyer.APIKey, B.ID).SharesAccepted >= 10
	})
	for _, id := range []string{A.ID, B.ID} {
		c.must("POST", "/api/v1/orders/"+id+"/cancel", buyer.APIKey, nil, nil)
	}
	waitFor(t, 30*time.Second, "the orders refunded", func() bool {
		for _, id := range []string{M.ID, A.ID, B.ID} {
			if c.order(buyer.APIKey, id).Remaining != 0 {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()

	for _, ch := range []struct {
		name, user, api string
		id              string
	}{{"A (pool 1)", userA, p1.API, A.ID}, {"B (pool 2: 4-byte extranonce2, mask 00ffe000)", userB, p2.API, B.ID}} {
		v := c.order(buyer.APIKey, ch.id)
		got := poolWorker(t, ch.api, ch.user)
		if v.SharesRejected != 0 {
			t.Errorf("%s: %d shares rejected by the destination", ch.name, v.SharesRejected)
		}
		if math.Abs(got.Work-v.AcceptedWork) > 0.02*got.Work {
			t.Errorf("%s: market measured %g (%d shares), the pool recorded %g (%d shares)", ch.name, v.AcceptedWork, v.SharesAccepted, got.Work, got.Accepted)
		}
		// Delivered speed against the limit: slices keep an order near it. A seller's
		// speed measured over idle time too made slices far too long (1.65 times the
		// limit in a minute); shares' variance and the miners' changing speeds allow
		// some way above.
		if v.AvgSpeed > 1.5*v.Limit {
			t.Errorf("%s: delivered %.4g TH/s on average, limit %.4g", ch.name, v.AvgSpeed, v.Limit)
		}
		t.Logf("%s over %v: market %g (%d shares), pool %g (%d shares); average speed %.4g TH/s against a limit of %.4g",
			ch.name, run, v.AcceptedWork, v.SharesAccepted, got.Work, got.Accepted, v.AvgSpeed, v.Limit)
	}
	if err := mr.Ledger.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}
