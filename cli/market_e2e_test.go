package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// startMarket runs RunMarket on loopback ports.
func startMarket(t *testing.T, cfg MarketConfig) (MarketReady, func()) {
	t.Helper()
	return startService(t, "market", func(ctx context.Context, env Env, ready func(MarketReady)) error {
		return RunMarket(ctx, cfg, env, ready)
	})
}

type marketClient struct {
	t    *testing.T
	base string
}

// do sends a JSON request and decodes the reply into out; it returns the status.
func (c marketClient) do(method, path, key string, body, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		c.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

func (c marketClient) must(method, path, key string, body, out any) {
	c.t.Helper()
	if st := c.do(method, path, key, body, out); st >= 300 {
		c.t.Fatalf("%s %s: status %d", method, path, st)
	}
}

func (c marketClient) order(key, id string) market.OrderView {
	c.t.Helper()
	var v market.OrderView
	c.must("GET", "/api/v1/orders/"+id, key, nil, &v)
	return v
}

func (c marketClient) book() market.Book {
	c.t.Helper()
	var b market.Book
	c.must("GET", "/api/v1/orderbook", "", nil, &b)
	return b
}

func (c marketClient) sellers(id string) int {
	for _, o := range c.book().Orders {
		if o.ID == id {
			return o.Sellers
		}
	}
	return 0
}

// poolWorker returns a pool's record of one address.worker.
func poolWorker(t *testing.T, apiAddr, user string) api.WorkerInfo {
	t.Helper()
	addr, name, _ := strings.Cut(user, ".")
	resp, err := http.Get("http://" + apiAddr + "/api/v1/workers/" + addr)
	if err != nil {
		t.Fatalf("pool API: %v", err)
	}
	defer resp.Body.Close()
	var ai api.AddressInfo
	json.NewDecoder(resp.Body).Decode(&ai)
	for _, w := range ai.Workers {
		if w.Name == name {
			return w
		}
	}
	return api.WorkerInfo{}
}

// startDestinationPools starts btcd regtest and two hashgrid pools on it as buyers'
// destinations: pool 1 paying TestAddress, pool 2 paying TestAddressP2PKH with a
// 4-byte extranonce2 (no room for the market's seller prefix: one connection per
// seller) and a version mask narrower than miners ask for.
func startDestinationPools(t *testing.T, tag string) (p1 PoolReady, stop1 func(), p2 PoolReady, stop2 func()) {
	t.Helper()
	btcd := regtest.StartT(t)
	poolCfg := func(payout string) PoolConfig {
		return PoolConfig{Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: payout,
			Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Tag: tag,
			PollInterval: 100 * time.Millisecond, TrackInterval: time.Second, ShareInterval: time.Second, LogLevel: "warn"}
	}
	p1, stop1 = startPool(t, poolCfg(regtest.TestAddress()))
	small := poolCfg(regtest.TestAddressP2PKH())
	small.Extranonce2Size, small.VersionMask = 4, "00ffe000"
	p2, stop2 = startPool(t, small)
	return p1, stop1, p2, stop2
}

// TestMarketEndToEnd runs two hashgrid pools on btcd regtest (different payout
// addresses), one market and three hashgrid CPU miners as sellers, and drives the
// buyers' side through the HTTP API: routing by price and limit, a killed pool, a
// cancel, a contract sold mid-term, and finally the books.
func TestMarketEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	addr1, addr2 := regtest.TestAddress(), regtest.TestAddressP2PKH()
	p1, stopP1, p2, stopP2 := startDestinationPools(t, "/market-e2e/")
	defer stopP1()
	p2Stopped := false
	defer func() {
		if !p2Stopped {
			stopP2()
		}
	}()
	mr, stopMarket := startMarket(t, MarketConfig{Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Network: "regtest",
		FeeBps: 200, SellerShareInterval: time.Second, LogLevel: "info", AdminToken: "e2e-admin", AllowPrivateDestinations: true})
	defer stopMarket()
	c := marketClient{t: t, base: "http://" + mr.API}

	// Buyers.
	var alice, bob market.AccountCreated
	c.must("POST", "/api/v1/accounts", "", nil, &alice)
	c.must("POST", "/api/v1/accounts", "", nil, &bob)
	if st := c.do("POST", "/api/v1/admin/deposits", "wrong", market.DepositRequest{Account: alice.ID, Amount: 1, Reference: "x"}, nil); st != http.StatusUnauthorized {
		t.Errorf("deposit with a wrong admin token: status %d", st)
	}
	const depA, depB = 5_000_000_000, 5_000_000_000
	c.must("POST", "/api/v1/admin/deposits", "e2e-admin", market.DepositRequest{Account: alice.ID, Amount: depA, Reference: "a1"}, nil)
	c.must("POST", "/api/v1/admin/deposits", "e2e-admin", market.DepositRequest{Account: bob.ID, Amount: depB, Reference: "b1"}, nil)
	if st := c.do("GET", "/api/v1/orders", "hgk_"+alice.ID+"_00", nil, nil); st != http.StatusUnauthorized {
		t.Errorf("orders with a bad key: status %d", st)
	}

	// Orders: A on pool 1 pays most, B on pool 2 next, C on pool 1 least. The pools'
	// difficulty is fixed by password so that shares come at a steady rate.
	place := func(pool PoolReady, user string, price int64) market.OrderView {
		var v market.OrderView
		c.must("POST", "/api/v1/orders", alice.APIKey, market.OrderRequest{PoolURL: "stratum+tcp://" + pool.Stratum, PoolUser: user,
			PoolPassword: "d=0.0005", Price: price, Budget: 1_000_000_000}, &v)
		return v
	}
	userA, userB, userC := addr1+".orderA", addr2+".orderB", addr1+".orderC"
	A := place(p1, userA, 3_000_000_000_000_000)
	B := place(p2, userB, 2_000_000_000_000_000)
	C := place(p1, userC, 1_000_000_000_000_000)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	sellers := []string{addr1 + ".s1", addr2 + ".s2", addr1 + ".s3"}
	for i, u := range sellers {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + mr.Stratum, User: u, VersionRoll: i != 1, MaxRetryWait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { m.Run(ctx) })
	}

	// 1. Price: every seller goes to A.
	waitFor(t, 60*time.Second, "all sellers on A and shares accepted", func() bool {
		return c.sellers(A.ID) == 3 && c.order(alice.APIKey, A.ID).SharesAccepted >= 10
	})
	if v := c.order(alice.APIKey, B.ID); v.SharesAccepted != 0 {
		t.Errorf("B got %d shares while A had room", v.SharesAccepted)
	}

	// 2. Limit: A may take about one seller; the others go to B.
	time.Sleep(5 * time.Second) // fill the speed estimates
	var aSpeed float64
	for _, o := range c.book().Orders {
		if o.ID == A.ID {
			aSpeed = o.Speed
		}
	}
	limit := aSpeed / 3 * 1.5
	c.must("PATCH", "/api/v1/orders/"+A.ID, alice.APIKey, market.OrderEdit{Limit: &limit}, nil)
	waitFor(t, 3*time.Second, "A within its limit, B served", func() bool {
		n := c.sellers(A.ID)
		return n >= 1 && n < 3 && c.sellers(B.ID) == 3-n
	})
	waitFor(t, 30*time.Second, "shares accepted for B", func() bool { return c.order(alice.APIKey, B.ID).SharesAccepted >= 5 })
	// On pool 2's small extranonce2 and narrower mask, nothing the market forwarded
	// was refused, and the pool recorded the work.
	if v := c.order(alice.APIKey, B.ID); v.SharesRejected != 0 {
		t.Errorf("pool 2 (4-byte extranonce2, mask 00ffe000) rejected %d of B's shares", v.SharesRejected)
	}
	if w := poolWorker(t, p2.API, userB); w.Accepted < 5 {
		t.Errorf("pool 2 recorded %d of B's shares", w.Accepted)
	}

	// 3. Kill B's pool: B pauses with a reason, its sellers move to C (A is full), and
	// nothing more is charged to B.
	stopP2()
	p2Stopped = true
	waitFor(t, 5*time.Second, "B paused", func() bool { return c.order(alice.APIKey, B.ID).Status == market.StatusPaused })
	vb := c.order(alice.APIKey, B.ID)
	if !strings.Contains(vb.Reason, "destination") {
		t.Errorf("B's pause reason %q", vb.Reason)
	}
	waitFor(t, 3*time.Second, "B's sellers on C", func() bool { return c.sellers(C.ID) >= 1 && c.sellers(B.ID) == 0 })
	waitFor(t, 30*time.Second, "shares accepted for C", func() bool { return c.order(alice.APIKey, C.ID).SharesAccepted >= 3 })
	if vb2 := c.order(alice.APIKey, B.ID); vb2.Spent != vb.Spent || vb2.SharesAccepted != vb.SharesAccepted {
		t.Errorf("B charged while its pool was dead: spent %d → %d", vb.Spent, vb2.Spent)
	}

	// 4. Cancel A: its sellers move to C within a second.
	start := time.Now()
	c.must("POST", "/api/v1/orders/"+A.ID+"/cancel", alice.APIKey, nil, nil)
	waitFor(t, 5*time.Second, "all sellers on C", func() bool { return c.sellers(C.ID) == 3 })
	if el := time.Since(start); el > time.Second {
		t.Errorf("sellers moved %s after the cancel, want within a second", el)
	}

	// 5. Bob buys a contract (served before any spot order) to pool 1 for half the
	// sellers' capacity, then sells it to Alice, whose own worker on pool 1 receives
	// the rest. The quote comes from the book: C, which the contract pushes out, plus
	// the 5% premium.
	now := time.Now().UTC()
	quote := func(speed float64) (q market.Quote) {
		c.must("GET", fmt.Sprintf("/api/v1/contracts/quote?speed=%g&start=%s&end=%s", speed, now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)), "", nil, &q)
		return q
	}
	capTH := quote(1e-9).Capacity
	speed := math.Round(capTH/2*1e9) / 1e9
	q := quote(speed)
	if q.Price != 1_050_000_000_000_000 || q.Displaced != 1_000_000_000_000_000 {
		t.Errorf("quote %+v, want C's price plus 5%%", q)
	}
	userBob, userAliceK := addr1+".bobk", addr1+".alicek"
	var K market.OrderView
	c.must("POST", "/api/v1/contracts", bob.APIKey, market.ContractRequest{Speed: speed, Start: now, End: now.Add(time.Hour), Price: q.Price,
		PoolURL: "stratum+tcp://" + p1.Stratum, PoolUser: userBob, PoolPassword: "d=0.0005"}, &K)
	waitFor(t, 5*time.Second, "sellers on the contract", func() bool { return c.sellers(K.ID) >= 1 })
	waitFor(t, 30*time.Second, "delivery to bob", func() bool { return c.order(bob.APIKey, K.ID).SharesAccepted >= 5 })
	const xferPrice = 12_345
	c.must("POST", "/api/v1/contracts/"+K.ID+"/transfer", bob.APIKey, market.TransferRequest{To: alice.ID, Price: xferPrice}, nil)
	c.must("POST", "/api/v1/contracts/"+K.ID+"/accept", alice.APIKey, market.Destination{URL: "stratum+tcp://" + p1.Stratum, User: userAliceK, Password: "d=0.0005"}, nil)
	waitFor(t, 30*time.Second, "delivery to alice after the transfer", func() bool {
		v := c.order(alice.APIKey, K.ID)
		return len(v.Segments) == 2 && v.Segments[1].Accepted >= 5
	})

	// 6. End everything and check the books.
	for _, id := range []string{C.ID, K.ID} {
		c.must("POST", "/api/v1/orders/"+id+"/cancel", alice.APIKey, nil, nil)
	}
	c.must("POST", "/api/v1/orders/"+B.ID+"/cancel", alice.APIKey, nil, nil)
	waitFor(t, 10*time.Second, "all orders refunded", func() bool {
		for _, id := range []string{A.ID, B.ID, C.ID, K.ID} {
			v := c.order(alice.APIKey, id)
			if v.Remaining != 0 {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()

	// Delivered work as the market measured it against pool 1's records.
	vK := c.order(alice.APIKey, K.ID)
	checks := []struct {
		user   string
		market float64
		shares uint64
	}{
		{userA, c.order(alice.APIKey, A.ID).AcceptedWork, c.order(alice.APIKey, A.ID).SharesAccepted},
		{userC, c.order(alice.APIKey, C.ID).AcceptedWork, c.order(alice.APIKey, C.ID).SharesAccepted},
		{userBob, vK.Segments[0].AcceptedWork, vK.Segments[0].Accepted},
		{userAliceK, vK.Segments[1].AcceptedWork, vK.Segments[1].Accepted},
	}
	for _, ch := range checks {
		var got api.WorkerInfo
		waitFor(t, 10*time.Second, "pool 1 to record "+ch.user, func() bool {
			got = poolWorker(t, p1.API, ch.user)
			return got.Accepted >= ch.shares
		})
		if ch.market == 0 || math.Abs(got.Work-ch.market) > 0.02*got.Work {
			t.Errorf("%s: market measured %g, pool recorded %g (%d vs %d shares)", ch.user, ch.market, got.Work, ch.shares, got.Accepted)
		}
		t.Logf("%s: market %g (%d shares), pool %g (%d shares)", ch.user, ch.market, ch.shares, got.Work, got.Accepted)
	}

	// Money: the ledger balances; escrows are empty; what buyers paid is what sellers
	// earned plus the fee; each buyer's balance is explained to the satoshi.
	lctx := context.Background()
	if err := mr.Ledger.Check(lctx); err != nil {
		t.Fatal(err)
	}
	var spentAlice, spentAll int64
	for _, id := range []string{A.ID, B.ID, C.ID} {
		spentAlice += c.order(alice.APIKey, id).Spent
	}
	spentAll = spentAlice + vK.Spent
	escrows, _ := mr.Ledger.Balances(lctx, "market:escrow:")
	for a, b := range escrows {
		if b != 0 {
			t.Errorf("%s holds %d after every order ended", a, b)
		}
	}
	// Sellers' earnings were made payable at their addresses as they settled (this
	// market keeps a book of its own: nothing pays them); their per-worker accounts
	// hold nothing.
	left, _ := mr.Ledger.Balances(lctx, "market:seller:")
	if len(left) == 0 {
		t.Error("no per-worker seller account was ever posted to")
	} else {
		for a, b := range left {
			if b != 0 {
				t.Errorf("%s holds %d", a, b)
			}
		}
	}
	sellersBal, _ := mr.Ledger.Balances(lctx, "miner:")
	var earned int64
	for _, b := range sellersBal {
		earned += b
	}
	fees, _ := mr.Ledger.Balance(lctx, "market:fees")
	// Sellers are paid per valid share at the market's difficulty; buyers for what the
	// destination accepted: the market carries the difference in market:variance.
	variance, _ := mr.Ledger.Balance(lctx, "market:variance")
	if earned+fees+variance != spentAll || fees < spentAll*200/10_000 || fees > spentAll*200/10_000+int64(len(left))*4 {
		t.Errorf("sellers earned %d, fees %d, variance %d, buyers spent %d", earned, fees, variance, spentAll)
	}
	var av, bv market.AccountView
	c.must("GET", "/api/v1/account", alice.APIKey, nil, &av)
	c.must("GET", "/api/v1/account", bob.APIKey, nil, &bv)
	if want := int64(depA) - spentAlice - xferPrice - vK.Spent + vK.Budget; av.Balance != want {
		t.Errorf("alice's balance %d, want %d", av.Balance, want)
	}
	if want := int64(depB) - vK.Budget + xferPrice; bv.Balance != want {
		t.Errorf("bob's balance %d, want %d", bv.Balance, want)
	}
	var sv market.SellerView
	c.must("GET", "/api/v1/sellers/"+addr1, "", nil, &sv)
	if sv.Earned == 0 || len(sv.Workers) != 2 {
		t.Errorf("seller view %+v", sv)
	}

	// The buyer audits a sample of the delivered shares with their key, flags before
	// or after the order; without a key there are no shares to audit.
	if st := c.do("GET", "/api/v1/orders/"+C.ID+"/shares", "", nil, nil); st != http.StatusUnauthorized {
		t.Errorf("shares without a key: status %d", st)
	}
	if st := c.do("GET", "/api/v1/orders/"+C.ID+"/shares", bob.APIKey, nil, nil); st != http.StatusNotFound {
		t.Errorf("shares with another buyer's key: status %d", st)
	}
	keyEnv := func(k string) string {
		if k == envMarketAPIKey {
			return alice.APIKey
		}
		return ""
	}
	for _, args := range [][]string{{C.ID, "--api", "http://" + mr.API}, {"--api", "http://" + mr.API, C.ID}} {
		var out bytes.Buffer
		err := Run(lctx, append([]string{"market", "audit"}, args...), keyEnv, nil, &out, &out)
		if err != nil || !strings.Contains(out.String(), "re-hash and meet their difficulty") {
			t.Errorf("audit %q: %v\n%s", args, err, out.String())
		}
		t.Logf("%s", out.String())
	}
	for _, seller := range sellers {
		addr, _, _ := strings.Cut(seller, ".")
		var out bytes.Buffer
		Run(lctx, []string{"market", "audit", C.ID, "--api", "http://" + mr.API, "--json"}, keyEnv, nil, &out, &out)
		if strings.Contains(out.String(), addr) {
			t.Errorf("the buyer's audit names seller %s", addr)
		}
	}
}

// TestMarketFlags: the market's HTTP API binds loopback unless told otherwise (the
// sellers' port stays public), private destinations are refused unless allowed, and
// the admin token comes from a file or the environment, never a flag's value.
func TestMarketFlags(t *testing.T) {
	env := func(vars ...string) Env {
		return Env{Stderr: io.Discard, Getenv: func(k string) string {
			for i := 0; i+1 < len(vars); i += 2 {
				if vars[i] == k {
					return vars[i+1]
				}
			}
			return ""
		}}
	}
	cfg, err := parseMarketFlags(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(cfg.API)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("the API listens on %q by default, want loopback", cfg.API)
	}
	if cfg.Stratum != ":3334" || cfg.AllowPrivateDestinations || cfg.AdminToken != "" {
		t.Errorf("defaults %+v", cfg)
	}
	cfg, err = parseMarketFlags(nil, env(envMarketAdminToken, "from-env"))
	if err != nil || cfg.AdminToken != "from-env" {
		t.Errorf("token from the environment: %q, %v", cfg.AdminToken, err)
	}
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	cfg, err = parseMarketFlags([]string{"--admin-token-file", file, "--allow-private-destinations", "--api", ":0"}, env(envMarketAdminToken, "from-env"))
	if err != nil || cfg.AdminToken != "from-file" || !cfg.AllowPrivateDestinations || cfg.API != ":0" {
		t.Errorf("token from a file: %+v, %v", cfg, err)
	}
	if _, err := parseMarketFlags([]string{"--admin-token-file", file + ".missing"}, env()); !errors.Is(err, ErrUsage) {
		t.Errorf("a missing token file: %v", err)
	}
	if _, err := parseMarketFlags([]string{"--admin-token", "x"}, env()); err == nil {
		t.Error("the admin token was accepted as a flag's value")
	}
}

// TestMarketFlagValidation: every market.Config setting with a flag reaches the
// configuration, zero keeps the market's default, and a bad value is a usage error
// that names its flag.
func TestMarketFlagValidation(t *testing.T) {
	env := Env{Stderr: io.Discard, Getenv: func(string) string { return "" }}
	cfg, err := parseMarketFlags([]string{"--seller-min-difficulty", "2048", "--seller-start-difficulty", "4096", "--max-shares-per-seller-job", "100",
		"--upstream-in-flight", "8", "--max-upstreams-per-order", "3", "--min-order-budget", "5000", "--price-decrease-interval", "2m", "--max-price-decrease-bps", "500",
		"--contract-premium-bps", "250", "--pool-data", "/srv/pool"}, env)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(2048.0, 4096.0, 100, 8, 3, 5000, 2*time.Minute, 500, 250, "/srv/pool")
	got := fmt.Sprint(cfg.SellerMinDiff, cfg.SellerStartDiff, cfg.MaxSharesPerSellerJob, cfg.UpstreamInFlight, cfg.MaxUpstreamsPerOrder, cfg.MinOrderBudget,
		cfg.PriceDecreaseInterval, cfg.MaxPriceDecreaseBps, cfg.ContractPremiumBps, cfg.PoolData)
	if got != want {
		t.Errorf("parsed %s, want %s", got, want)
	}
	pgEnv := Env{Stderr: io.Discard, Getenv: func(k string) string {
		if k == envPostgres {
			return "postgres://pool@db:5432/books"
		}
		return ""
	}}
	if cfg, err := parseMarketFlags(nil, pgEnv); err != nil || cfg.Postgres != "postgres://pool@db:5432/books" {
		t.Errorf("--postgres from $%s: %q, %v", envPostgres, cfg.Postgres, err)
	}
	for _, c := range []struct {
		args []string
		env  Env
		flag string
	}{
		{[]string{"--seller-min-difficulty", "-1"}, env, "--seller-min-difficulty"},
		{[]string{"--seller-min-difficulty", "NaN"}, env, "--seller-min-difficulty"},
		{[]string{"--seller-min-difficulty", "+Inf"}, env, "--seller-min-difficulty"},
		{[]string{"--seller-start-difficulty", "0.001"}, env, "--seller-start-difficulty"}, // below the default floor, 1024
		{[]string{"--seller-min-difficulty", "10", "--seller-start-difficulty", "5"}, env, "--seller-start-difficulty"},
		{[]string{"--seller-start-difficulty", "-3"}, env, "--seller-start-difficulty"},
		{[]string{"--max-shares-per-seller-job", "-1"}, env, "--max-shares-per-seller-job"},
		{[]string{"--upstream-in-flight", "-5"}, env, "--upstream-in-flight"},
		{[]string{"--max-upstreams-per-order", "-1"}, env, "--max-upstreams-per-order"},
		{[]string{"--min-order-budget", "-1"}, env, "--min-order-budget"},
		{[]string{"--price-decrease-interval", "-1s"}, env, "--price-decrease-interval"},
		{[]string{"--max-price-decrease-bps", "10001"}, env, "--max-price-decrease-bps"},
		{[]string{"--max-price-decrease-bps", "-1"}, env, "--max-price-decrease-bps"},
		{[]string{"--contract-premium-bps", "-1"}, env, "--contract-premium-bps"},
		{[]string{"--fee-bps", "10000"}, env, "--fee-bps"},
		{[]string{"--seller-share-interval", "-1s"}, env, "--seller-share-interval"},
		{[]string{"--postgres", "mysql://x"}, env, "--postgres"},
		{[]string{"--pool-data", "/srv/pool"}, pgEnv, "--pool-data and --postgres"},
		{[]string{"--upstream-in-flight", "many"}, env, "upstream-in-flight"},
	} {
		_, err := parseMarketFlags(c.args, c.env)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%q: %v, want a usage error naming %s", c.args, err, c.flag)
		}
	}
	// --pool-data must hold the pool's book: a mistyped directory would start a new,
	// empty one that nothing pays from.
	empty := t.TempDir()
	err = RunMarket(context.Background(), MarketConfig{Data: t.TempDir(), PoolData: empty, Network: "regtest", Stratum: "127.0.0.1:0", API: "127.0.0.1:0", LogLevel: "warn"}, env, nil)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "no ledger.db") {
		t.Errorf("RunMarket with --pool-data holding no ledger: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(empty, "ledger.db")); serr == nil {
		t.Error("RunMarket created a ledger in --pool-data")
	}
	// A configuration built literally is checked the same way before anything opens.
	err = RunMarket(context.Background(), MarketConfig{Data: t.TempDir(), Network: "regtest", UpstreamInFlight: -1}, env, nil)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--upstream-in-flight") {
		t.Errorf("RunMarket with a negative UpstreamInFlight: %v", err)
	}
}

// TestMarketAuditArgs runs `market audit` against a real market: the order may come
// before or after the flags, a key is required, and the reply for an order the key
// does not own is the market's message, not a usage error.
func TestMarketAuditArgs(t *testing.T) {
	mr, stop := startMarket(t, MarketConfig{Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Network: "regtest", LogLevel: "warn"})
	defer stop()
	c := marketClient{t: t, base: "http://" + mr.API}
	var acct market.AccountCreated
	c.must("POST", "/api/v1/accounts", "", nil, &acct)
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(acct.APIKey+"\n"), 0o600)
	api := "http://" + mr.API
	for _, args := range [][]string{
		{"o99", "--api", api, "--key-file", keyFile},
		{"--api", api, "o99", "--key-file", keyFile},
		{"--api", api, "--key-file", keyFile, "o99"},
		{"--api", api, "--key-file", keyFile, "--", "o99"},
	} {
		var out bytes.Buffer
		err := Run(context.Background(), append([]string{"market", "audit"}, args...), nil, nil, &out, &out)
		if err == nil || errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no order") {
			t.Errorf("audit %q: %v, want the market's 404 for an order that is not the buyer's", args, err)
		}
	}
	for _, args := range [][]string{
		{"o99", "--api", api},                                 // no key
		{"--api", api, "--key-file", keyFile},                 // no order
		{"o1", "o2", "--api", api, "--key-file", keyFile},     // two orders
		{"o1", "--api", api, "--key-file", keyFile + ".nope"}, // unreadable key
	} {
		var out bytes.Buffer
		if err := Run(context.Background(), append([]string{"market", "audit"}, args...), nil, nil, &out, &out); !errors.Is(err, ErrUsage) {
			t.Errorf("audit %q: %v, want a usage error", args, err)
		}
	}
}

// TestMarketPageBrowser drives the buyers' page in a real headless Chromium against a
// market whose sellers are hashgrid CPU miners delivering to a hashgrid pool on btcd
// (regtest): the public order book shows the order, a wrong key is refused in words,
// the buyer's key (typed in, kept in the tab's session storage) shows the balance,
// the order and its delivered speed over time. No page state, at desktop or phone
// width, shows a raw object, a ledger account name, the key, a seller's address or
// the order's destination to the public.
func TestMarketPageBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd and Chromium")
	}
	btcd := regtest.StartT(t)
	payout := regtest.TestAddress()
	p, stopPool := startPool(t, PoolConfig{Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: payout,
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Tag: "/market-page/",
		PollInterval: 100 * time.Millisecond, TrackInterval: time.Second, ShareInterval: time.Second, LogLevel: "warn"})
	defer stopPool()
	const admin = "page-admin-SECRET"
	mr, stopMarket := startMarket(t, MarketConfig{Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Network: "regtest",
		SellerShareInterval: time.Second, LogLevel: "warn", AdminToken: admin, AllowPrivateDestinations: true, SpeedBucket: 2 * time.Second})
	defer stopMarket()
	base := "http://" + mr.API
	c := marketClient{t: t, base: base}
	var buyer market.AccountCreated
	c.must("POST", "/api/v1/accounts", "", nil, &buyer)
	c.must("POST", "/api/v1/admin/deposits", admin, market.DepositRequest{Account: buyer.ID, Amount: 2_000_000_000, Reference: "page"}, nil)
	poolUser := payout + ".bought"
	var o market.OrderView
	c.must("POST", "/api/v1/orders", buyer.APIKey, market.OrderRequest{PoolURL: "stratum+tcp://" + p.Stratum, PoolUser: poolUser,
		PoolPassword: "d=0.0005", Price: 1_000_000_000_000_000, Limit: 0, Budget: 1_000_000_000}, &o)

	seller := regtest.TestAddressP2PKH()
	mctx, stopMiners := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopMiners(); wg.Wait() }()
	for i, name := range []string{"rig1", "rig2"} {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + mr.Stratum, User: seller + "." + name, VersionRoll: i == 0, MaxRetryWait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { m.Run(mctx) })
	}
	waitFor(t, 60*time.Second, "shares delivered to the order", func() bool { return c.order(buyer.APIKey, o.ID).SharesAccepted >= 5 })

	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	// The public view: the order book, and nothing of the buyer's.
	poll(t, ctx, 20*time.Second, "the order in the public book", fmt.Sprintf(`!!document.querySelector('#book tr[data-order=%q]') && document.getElementById('live').classList.contains('on')`, o.ID))
	poll(t, ctx, 5*time.Second, "the buyer's view hidden", `document.getElementById('buyer-view').hidden && !document.getElementById('welcome').hidden`)
	checkMarketPage(t, ctx, "public", []string{buyer.APIKey, p.Stratum, poolUser, seller, admin})

	// A wrong key is refused in words.
	if err := chromedp.Do(ctx, chromedp.SendKeys("#key-input", "hgk_"+buyer.ID+"_00"), chromedp.Click("#key-button")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 10*time.Second, "the wrong key refused", `(() => { const n = document.getElementById('key-note'); return !n.hidden && /not valid/.test(n.textContent) && document.getElementById('buyer-view').hidden })()`)
	checkMarketPage(t, ctx, "wrong key", []string{buyer.APIKey, p.Stratum, poolUser, seller, admin})

	// The buyer's key: balance, the order, its delivered speed over time.
	if err := chromedp.Do(ctx, chromedp.SendKeys("#key-input", buyer.APIKey), chromedp.Click("#key-button")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 15*time.Second, "the buyer's order", fmt.Sprintf(`!!document.querySelector('#orders tr[data-order=%q][data-status="active"].selected') && /BTC|sat/.test(document.getElementById('c-balance').textContent)`, o.ID))
	poll(t, ctx, 30*time.Second, "a speed chart with delivered points",
		`(() => { const p = document.querySelector('#chart path.line'); return !!p && Number(p.dataset.points) >= 3 && /[1-9]/.test(document.getElementById('c-speed').textContent) })()`)
	if got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('hashgrid-market-key')`)); got != buyer.APIKey {
		t.Errorf("session storage holds %q, want the key", got)
	}
	if got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.length + ':' + document.cookie`)); got != "0:" {
		t.Errorf("the key went elsewhere than session storage: %q", got)
	}
	// Compute leasing beside the hashrate orders: a provider's offer for everyone, the
	// buyer's compute job in its own table.
	var prov market.AccountCreated
	c.must("POST", "/api/v1/accounts", "", nil, &prov)
	c.must("POST", "/api/v1/compute/providers", prov.APIKey, compute.ProviderRequest{Name: "box-1", PayoutAddress: payout,
		Resources: compute.Resources{Cores: 1, Memory: 1 << 30}, Price: 5}, nil)
	var job compute.OrderView
	c.must("POST", "/api/v1/compute/orders", buyer.APIKey, compute.OrderRequest{Module: []byte("\x00asm\x01\x00\x00\x00"),
		Units: [][]byte{[]byte("1")}, Cores: 1, Memory: 64 << 20, MaxPrice: 10, Budget: 10_000}, &job)
	poll(t, ctx, 20*time.Second, "the provider's offer on the page", `[...document.querySelectorAll('#compute-offers tr[data-provider]')].some((r) => r.textContent.includes('box-1')) && !document.getElementById('compute-panel').hidden`)
	poll(t, ctx, 20*time.Second, "the job's lease among the live leases", `[...document.querySelectorAll('#compute-leases tr[data-lease]')].some((r) => r.textContent.includes('box-1')) && !document.getElementById('compute-leases-panel').hidden`)
	poll(t, ctx, 20*time.Second, "the buyer's compute job on the page", fmt.Sprintf(`!!document.querySelector('#leases tr[data-job=%q]') && !document.getElementById('leases-panel').hidden`, job.ID))
	// A service (no units) shows as one, with its requests served.
	var svc compute.OrderView
	c.must("POST", "/api/v1/compute/orders", buyer.APIKey, compute.OrderRequest{Kind: compute.KindService, Module: []byte("\x00asm\x01\x00\x00\x00"),
		Cores: 1, Memory: 64 << 20, MaxPrice: 10, Budget: 10_000, Manual: true}, &svc)
	poll(t, ctx, 20*time.Second, "the buyer's service on the page", fmt.Sprintf(`(document.querySelector('#leases tr[data-job=%q]') || {textContent: ''}).textContent.includes('service, 0 served')`, svc.ID))
	balance, _ := chromedp.Run(ctx, chromedp.Text("#c-balance"))
	delivered, _ := chromedp.Run(ctx, chromedp.Text("#c-speed"))
	t.Logf("balance shown %q, delivered %q", balance, delivered)
	// The buyer sees their own destination, and still no seller, key or ledger name.
	checkMarketPage(t, ctx, "buyer", []string{buyer.APIKey, seller, admin})
	screenshot(t, ctx, 1280, 900, "market-desktop.png")
	checkMarketPage(t, ctx, "buyer, desktop", []string{buyer.APIKey, seller, admin})
	screenshot(t, ctx, 390, 844, "market-phone.png")
	checkMarketPage(t, ctx, "buyer, phone", []string{buyer.APIKey, seller, admin})
	if w, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`)); w > 1 {
		t.Errorf("the phone layout is %d px wider than the screen", w)
	}

	// A reload keeps the buyer signed in (same tab); signing out forgets the key.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 15*time.Second, "signed in after a reload", fmt.Sprintf(`!!document.querySelector('#orders tr[data-order=%q]') && !document.getElementById('buyer-view').hidden`, o.ID))
	if err := chromedp.Do(ctx, chromedp.Click("#sign-out")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "signed out", `document.getElementById('buyer-view').hidden && sessionStorage.getItem('hashgrid-market-key') === null`)
}

// checkMarketPage fails the test if the page's text shows a raw object, a ledger
// account name or any of the given secrets.
func checkMarketPage(t *testing.T, ctx context.Context, state string, secrets []string) {
	t.Helper()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"`, `":`, "[object", "object Object", "undefined", "NaN", "market:buyer", "market:escrow", "market:seller", "market:fee", "market:deposit", "key_hash"} {
		if strings.Contains(text, bad) {
			t.Errorf("%s: the page shows %q:\n%s", state, bad, tail(text, 2000))
		}
	}
	for _, s := range secrets {
		if strings.Contains(html, s) {
			t.Errorf("%s: the page holds %q", state, s)
		}
	}
}
