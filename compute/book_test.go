package compute_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
)

// clock is a test's time, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a market with its ledger and a compute book on it.
type fixture struct {
	t   testing.TB
	m   *market.Market
	led *ledger.Ledger
	b   *compute.Book
	clk *clock
	ctx context.Context
}

var regtest = &chaincfg.RegressionNetParams

// Prices in the tests: 3,600,000 sat per core-hour is one sat per CPU millisecond.
const satPerMS = 3_600_000

func newFixture(tb testing.TB, cfg compute.Config) *fixture {
	tb.Helper()
	dir := tb.TempDir()
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), clk.Now)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { led.Close() })
	m, err := market.New(market.Config{Network: regtest, Ledger: led, StatePath: filepath.Join(dir, "market.json"), Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Shutdown(context.Background()) })
	cfg.Ledger, cfg.Accounts, cfg.Network = led, m, regtest
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	b, err := compute.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{t: tb, m: m, led: led, b: b, clk: clk, ctx: context.Background()}
}

// account opens a market account holding deposit satoshis.
func (f *fixture) account(deposit int64) (id, key string) {
	f.t.Helper()
	id, key, err := f.m.CreateAccount()
	if err != nil {
		f.t.Fatal(err)
	}
	if deposit > 0 {
		if err := f.m.Deposit(f.ctx, id, deposit, "deposit-"+id); err != nil {
			f.t.Fatal(err)
		}
	}
	return id, key
}

func payAddr(tb testing.TB, i byte) string {
	a, err := address.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{i}, 20), regtest)
	if err != nil {
		tb.Fatal(err)
	}
	return a.EncodeAddress()
}

type testProvider struct {
	acct, id, addr string
}

func (f *fixture) provider(name string, i byte, price int64) testProvider {
	f.t.Helper()
	acct, _ := f.account(0)
	addr := payAddr(f.t, i)
	v, err := f.b.Register(acct, compute.ProviderRequest{Name: name, PayoutAddress: addr, Resources: compute.Resources{Cores: 2, Memory: 1 << 30}, Price: price})
	if err != nil {
		f.t.Fatal(err)
	}
	return testProvider{acct, v.ID, addr}
}

// module is the smallest WebAssembly module: the book checks the magic only.
var module = []byte("\x00asm\x01\x00\x00\x00")

func (f *fixture) order(tenant string, units int, budget int64, noVerify bool) compute.OrderView {
	f.t.Helper()
	req := compute.OrderRequest{Module: module, Cores: 1, Memory: 64 << 20, MaxPrice: 10 * satPerMS, Budget: budget, NoVerify: noVerify}
	for i := range units {
		req.Units = append(req.Units, []byte{byte(i)})
	}
	v, err := f.b.PlaceOrder(f.ctx, tenant, req)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) work(p testProvider) []compute.LeaseWork {
	f.t.Helper()
	w, err := f.b.Work(f.ctx, p.acct, p.id, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// lease fetches the one lease waiting for p.
func (f *fixture) lease(p testProvider) compute.LeaseWork {
	f.t.Helper()
	w := f.work(p)
	if len(w) != 1 {
		f.t.Fatalf("provider %s fetched %d leases, want 1", p.id, len(w))
	}
	return w[0]
}

func (f *fixture) report(p testProvider, lease string, rep compute.UsageReport) compute.ReportReply {
	f.t.Helper()
	r, err := f.b.Report(f.ctx, p.acct, lease, rep)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) result(p testProvider, lease string, unit int, out string) {
	f.t.Helper()
	if err := f.b.Result(f.ctx, p.acct, lease, compute.UnitResult{Unit: unit, Stdout: []byte(out)}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) balance(acct string) int64 {
	f.t.Helper()
	n, err := f.led.Balance(f.ctx, acct)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) orderView(tenant, id string) compute.OrderView {
	f.t.Helper()
	v, err := f.b.Order(tenant, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// checkBooks runs ledger.Check and holds what the tenants paid against what the
// providers earned and the fee, to the satoshi, with every escrow and held account
// empty once its orders are closed.
func (f *fixture) checkBooks(deposits map[string]int64) {
	f.t.Helper()
	if err := f.led.Check(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	var paid int64
	for acct, d := range deposits {
		paid += d - f.balance("market:buyer:"+acct)
	}
	earned, err := f.led.Balances(f.ctx, "miner:")
	if err != nil {
		f.t.Fatal(err)
	}
	var e int64
	for _, n := range earned {
		e += n
	}
	fee := f.balance("compute:fees")
	if paid != e+fee {
		f.t.Errorf("tenants paid %d sat, providers earned %d + fee %d = %d", paid, e, fee, e+fee)
	}
	for _, prefix := range []string{"compute:escrow:", "compute:held:", "compute:provider:"} {
		bals, err := f.led.Balances(f.ctx, prefix)
		if err != nil {
			f.t.Fatal(err)
		}
		for a, n := range bals {
			if n != 0 {
				f.t.Errorf("%s holds %d sat after every order closed", a, n)
			}
		}
	}
}

func TestMeteredSettlement(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 2, 100_000, true)
	if o.Status != compute.OrderRunning || len(o.Leases) != 1 {
		t.Fatalf("order %+v: want running with one lease", o)
	}
	if got := f.balance("market:buyer:" + tenant); got != 900_000 {
		t.Errorf("tenant balance after placing: got %d, want 900000 (budget held in escrow)", got)
	}
	w := f.work(p)
	if len(w) != 1 || len(w[0].Units) != 2 {
		t.Fatalf("work: got %+v, want one lease of two units", w)
	}
	lease := w[0].ID
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 500e6, WallNS: 1e9, RSS: 10 << 20}); r.Stop || r.Charged != 500 {
		t.Fatalf("first report: got %+v, want 500 sat charged, no stop", r)
	}
	// A retry of the same report charges nothing more.
	if r := f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 500e6, WallNS: 1e9, RSS: 10 << 20}); r.Charged != 500 {
		t.Fatalf("retried report: charged %d, want 500", r.Charged)
	}
	if got := f.balance("compute:escrow:" + o.ID); got != 99_500 {
		t.Errorf("escrow after one interval: got %d, want 99500", got)
	}
	f.result(p, lease, 0, "zero")
	f.result(p, lease, 1, "one")
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 1200e6, WallNS: 2e9, Final: true}); r.Stop || r.Charged != 1200 {
		t.Fatalf("final report: got %+v, want 1200 sat charged", r)
	}
	o = f.orderView(tenant, o.ID)
	if o.Status != compute.OrderDone || !o.Closed || o.Charged != 1200 || o.Refunded != 98_800 {
		t.Fatalf("order %+v: want done, closed, 1200 charged, 98800 refunded", o)
	}
	// Fee: 1200 − floor(1200 · 9800 / 10000) = 24.
	if got := f.balance("miner:" + p.addr + ":balance"); got != 1176 {
		t.Errorf("provider payable: got %d, want 1176", got)
	}
	if got := f.balance("compute:fees"); got != 24 {
		t.Errorf("fees: got %d, want 24", got)
	}
	pv, err := f.b.Provider(f.ctx, p.acct, p.id)
	if err != nil {
		t.Fatal(err)
	}
	if pv.Earned != 1176 || pv.Payable != 1176 || pv.Held != 0 || len(pv.Leases) != 1 || pv.Leases[0].Settled != "released" {
		t.Errorf("provider view %+v: want 1176 earned and payable, one released lease", pv)
	}
	outs, err := f.b.Outputs(tenant, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || string(outs[0].Stdout) != "zero" || string(outs[1].Stdout) != "one" {
		t.Errorf("outputs: got %+v", outs)
	}
	f.checkBooks(map[string]int64{tenant: 1_000_000})
}

func TestMeteringBoundedByLease(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	f.order(tenant, 1, 100_000, true)
	lease := f.lease(p).ID
	f.clk.Add(time.Second)
	// Five CPU-seconds in one wall second on one leased core, and a wall time ten
	// times the market's clock: one CPU-second and 1.5 s (the clock plus half an
	// interval of slack) are metered.
	if r := f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 5e9, WallNS: 1e9}); r.Charged != 1000 {
		t.Errorf("CPU above the leased cores: charged %d, want 1000", r.Charged)
	}
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 20e9, WallNS: 20e9}); r.Charged != 2500 {
		t.Errorf("wall time beyond the market's clock: charged %d, want 2500", r.Charged)
	}
}

func TestMemoryHeldIsCharged(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	acct, _ := f.account(0)
	v, err := f.b.Register(acct, compute.ProviderRequest{Name: "m", PayoutAddress: payAddr(t, 9), Resources: compute.Resources{Cores: 1, Memory: 1 << 30},
		MemPrice: 3_600_000})
	if err != nil {
		t.Fatal(err)
	}
	p := testProvider{acct, v.ID, ""}
	req := compute.OrderRequest{Module: module, Units: [][]byte{{1}}, Cores: 1, Memory: 512 << 20, MaxMemPrice: 3_600_000, Budget: 100_000, NoVerify: true}
	if _, err := f.b.PlaceOrder(f.ctx, tenant, req); err != nil {
		t.Fatal(err)
	}
	lease := f.lease(p).ID
	f.clk.Add(time.Second)
	// Half a GiB for one second at 1000 sat per GiB-second: 500 sat; RSS above the
	// lease's memory is metered as the lease's memory.
	if r := f.report(p, lease, compute.UsageReport{Seq: 1, WallNS: 1e9, RSS: 256 << 20}); r.Charged != 250 {
		t.Errorf("256 MiB for a second: charged %d, want 250", r.Charged)
	}
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 2, WallNS: 2e9, RSS: 4 << 30}); r.Charged != 750 {
		t.Errorf("RSS above the lease: charged %d, want 750", r.Charged)
	}
}

func TestBudgetStopsWithinOneInterval(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(10_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 1, 2_500, true)
	lease := f.lease(p).ID
	// One interval of the lease costs at most 1000 sat (one core busy for a second).
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 1e9, WallNS: 1e9}); r.Stop || r.Charged != 1000 {
		t.Fatalf("first interval: got %+v, want 1000 charged and go on (1500 left)", r)
	}
	f.clk.Add(time.Second)
	r := f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 2e9, WallNS: 2e9})
	if !r.Stop || r.Charged != 2000 {
		t.Fatalf("second interval: got %+v, want 2000 charged and stop (500 left, less than an interval)", r)
	}
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 3, CPUNS: 3e9, WallNS: 3e9}); !r.Stop || r.Charged != 2000 {
		t.Errorf("report after the stop: got %+v, want stop and nothing more charged", r)
	}
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderExhausted || !v.Closed || v.Charged != 2000 || v.Refunded != 500 {
		t.Errorf("order %+v: want exhausted, closed, 2000 charged, 500 refunded", v)
	}
	f.checkBooks(map[string]int64{tenant: 10_000})
}

func TestChargeNeverExceedsBudget(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(10_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 1, 2_500, true)
	lease := f.lease(p).ID
	// A late report of three busy seconds costs 3000; the escrow holds 2500.
	f.clk.Add(3 * time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 3e9, WallNS: 3e9}); !r.Stop || r.Charged != 2500 {
		t.Fatalf("got %+v, want the whole budget charged and stop", r)
	}
	if got := f.balance("market:buyer:" + tenant); got != 7_500 {
		t.Errorf("tenant balance: got %d, want 7500", got)
	}
	if v := f.orderView(tenant, o.ID); v.Refunded != 0 || !v.Closed {
		t.Errorf("order %+v: want closed with nothing left to refund", v)
	}
	f.checkBooks(map[string]int64{tenant: 10_000})
}

func TestLostLeaseRefundsTheRest(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 3, 50_000, true)
	lease := f.lease(p).ID
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 700e6, WallNS: 1e9})
	f.result(p, lease, 0, "a")
	// Three intervals without a report: not yet lost; a fourth: lost.
	f.clk.Add(3 * time.Second)
	f.b.Tick(f.ctx)
	if v := f.orderView(tenant, o.ID); v.Status != compute.OrderRunning {
		t.Fatalf("after 3 silent intervals: order %s, want running", v.Status)
	}
	f.clk.Add(time.Second + time.Millisecond)
	f.b.Tick(f.ctx)
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderLost || v.Leases[0].Status != compute.LeaseLost || !v.Closed {
		t.Fatalf("order %+v: want lost and closed", v)
	}
	if v.Charged != 700 || v.Refunded != 49_300 {
		t.Errorf("charged %d, refunded %d: want 700 (the reported work) and 49300", v.Charged, v.Refunded)
	}
	if r := f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 5e9, WallNS: 5e9}); !r.Stop || r.Charged != 700 {
		t.Errorf("report after the loss: got %+v, want stop and nothing more charged", r)
	}
	if got := f.balance("miner:" + p.addr + ":balance"); got != 686 {
		t.Errorf("provider paid %d for its reported work, want 686 (700 less the 2%% fee)", got)
	}
	f.checkBooks(map[string]int64{tenant: 100_000})
}

// spotFixture has three providers, cheapest first; the spot check samples unit 0.
func spotFixture(t *testing.T) (*fixture, [3]testProvider) {
	f := newFixture(t, compute.Config{Rand: func(int) int { return 0 }})
	return f, [3]testProvider{f.provider("a", 1, satPerMS), f.provider("b", 2, 2*satPerMS), f.provider("c", 3, 3*satPerMS)}
}

func findLease(t *testing.T, v compute.OrderView, provider string) compute.LeaseView {
	t.Helper()
	for _, l := range v.Leases {
		if l.Provider == provider {
			return l
		}
	}
	t.Fatalf("order %s has no lease on provider %s: %+v", v.ID, provider, v.Leases)
	return compute.LeaseView{}
}

func TestSpotCheckPasses(t *testing.T) {
	f, ps := spotFixture(t)
	tenant, _ := f.account(1_000_000)
	o := f.order(tenant, 4, 100_000, false)
	if len(o.Leases) != 2 || o.Leases[0].Provider != ps[0].id || o.Leases[1].Provider != ps[1].id || o.Leases[1].Units != 1 {
		t.Fatalf("leases %+v: want the job on the cheapest provider and a one-unit check on the next", o.Leases)
	}
	job, check := f.lease(ps[0]), f.lease(ps[1])
	if !bytes.Equal(check.Units[0], job.Units[0]) {
		t.Fatalf("the check re-runs %x, want unit 0 (%x)", check.Units[0], job.Units[0])
	}
	f.clk.Add(time.Second)
	for u := range 4 {
		f.result(ps[0], job.ID, u, strings.Repeat("x", u+1))
	}
	f.report(ps[0], job.ID, compute.UsageReport{Seq: 1, CPUNS: 1e9, WallNS: 1e9, Final: true})
	// The job is done, but its earnings wait for the check.
	if got := f.balance("miner:" + ps[0].addr + ":balance"); got != 0 {
		t.Fatalf("job paid %d before its spot check, want 0", got)
	}
	f.result(ps[1], check.ID, 0, "x")
	f.report(ps[1], check.ID, compute.UsageReport{Seq: 1, CPUNS: 100e6, WallNS: 1e9, Final: true})
	v := f.orderView(tenant, o.ID)
	if v.Verdict != "pass" || v.Checked != 1 || !v.Closed {
		t.Fatalf("order %+v: want verdict pass with one unit checked, closed", v)
	}
	if got := f.balance("miner:" + ps[0].addr + ":balance"); got != 980 {
		t.Errorf("job provider paid %d, want 980", got)
	}
	if got := f.balance("miner:" + ps[1].addr + ":balance"); got != 196 {
		t.Errorf("check provider paid %d, want 196 (100 ms at 2 sat/ms, less 2%%)", got)
	}
	f.checkBooks(map[string]int64{tenant: 1_000_000})
}

func TestSpotCheckCatchesWrongResults(t *testing.T) {
	f, ps := spotFixture(t)
	tenant, _ := f.account(1_000_000)
	o := f.order(tenant, 4, 100_000, false)
	job, check := f.lease(ps[0]), f.lease(ps[1])
	f.clk.Add(time.Second)
	f.report(ps[0], job.ID, compute.UsageReport{Seq: 1, CPUNS: 1e9, WallNS: 1e9})
	f.result(ps[0], job.ID, 0, "wrong")
	f.result(ps[1], check.ID, 0, "right")
	f.report(ps[1], check.ID, compute.UsageReport{Seq: 1, CPUNS: 100e6, WallNS: 1e9, Final: true})
	// The two disagree: a third provider rules.
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderRunning || len(v.Leases) != 3 {
		t.Fatalf("order %+v: want a tie-break lease on the third provider", v)
	}
	tie := f.lease(ps[2])
	f.result(ps[2], tie.ID, 0, "right")
	f.clk.Add(time.Second)
	f.report(ps[2], tie.ID, compute.UsageReport{Seq: 1, CPUNS: 100e6, WallNS: 1e9, Final: true})
	v = f.orderView(tenant, o.ID)
	if v.Status != compute.OrderFailed || v.Verdict != "fault" || !v.Closed {
		t.Fatalf("order %+v: want failed with verdict fault, closed", v)
	}
	if l := findLease(t, v, ps[0].id); l.Status != compute.LeaseFaulted || l.Settled != "forfeited" {
		t.Errorf("job lease %+v: want faulted and forfeited", l)
	}
	if r := f.report(ps[0], job.ID, compute.UsageReport{Seq: 2, CPUNS: 2e9, WallNS: 2e9}); !r.Stop {
		t.Errorf("the faulted provider's next report: got %+v, want stop", r)
	}
	if got := f.balance("miner:" + ps[0].addr + ":balance"); got != 0 {
		t.Errorf("wrong results paid %d sat, want 0", got)
	}
	// The tenant pays only the re-runs: 100 ms at 2 sat/ms and 100 ms at 3 sat/ms.
	if got := 1_000_000 - f.balance("market:buyer:"+tenant); got != 500 {
		t.Errorf("tenant paid %d, want 500 (the two re-runs; the wrong job refunded)", got)
	}
	for _, o := range f.b.Offers() {
		if o.Provider == ps[0].id {
			t.Errorf("the marked provider is still offered")
		}
	}
	pv, _ := f.b.Provider(f.ctx, ps[0].acct, ps[0].id)
	if !pv.Marked || pv.Faults != 1 {
		t.Errorf("provider %+v: want marked with one fault", pv)
	}
	f.checkBooks(map[string]int64{tenant: 1_000_000})
}

func TestSpotCheckFaultsAWrongChecker(t *testing.T) {
	f, ps := spotFixture(t)
	tenant, _ := f.account(1_000_000)
	o := f.order(tenant, 2, 100_000, false)
	job, check := f.lease(ps[0]), f.lease(ps[1])
	f.clk.Add(time.Second)
	f.result(ps[0], job.ID, 0, "right")
	f.result(ps[0], job.ID, 1, "also right")
	f.report(ps[0], job.ID, compute.UsageReport{Seq: 1, CPUNS: 1e9, WallNS: 1e9, Final: true})
	f.result(ps[1], check.ID, 0, "wrong")
	f.report(ps[1], check.ID, compute.UsageReport{Seq: 1, CPUNS: 100e6, WallNS: 1e9, Final: true})
	tie := f.lease(ps[2])
	f.result(ps[2], tie.ID, 0, "right")
	f.report(ps[2], tie.ID, compute.UsageReport{Seq: 1, CPUNS: 100e6, WallNS: 1e9, Final: true})
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderDone || v.Verdict != "pass" || !v.Closed {
		t.Fatalf("order %+v: want done, verdict pass, closed", v)
	}
	if l := findLease(t, v, ps[1].id); l.Status != compute.LeaseFaulted || l.Settled != "forfeited" {
		t.Errorf("check lease %+v: want faulted and forfeited", l)
	}
	if got := f.balance("miner:" + ps[0].addr + ":balance"); got != 980 {
		t.Errorf("the job's provider paid %d, want 980", got)
	}
	pv, _ := f.b.Provider(f.ctx, ps[1].acct, ps[1].id)
	if !pv.Marked {
		t.Errorf("the wrong checker is not marked")
	}
	f.checkBooks(map[string]int64{tenant: 1_000_000})
}

func TestNoThirdProviderFaultsTheJob(t *testing.T) {
	f := newFixture(t, compute.Config{Rand: func(int) int { return 0 }})
	a, b := f.provider("a", 1, satPerMS), f.provider("b", 2, 2*satPerMS)
	tenant, _ := f.account(1_000_000)
	o := f.order(tenant, 2, 100_000, false)
	job, check := f.lease(a), f.lease(b)
	f.clk.Add(time.Second)
	f.report(a, job.ID, compute.UsageReport{Seq: 1, CPUNS: 1e9, WallNS: 1e9})
	f.result(a, job.ID, 0, "one")
	f.result(b, check.ID, 0, "other")
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderFailed || findLease(t, v, a.id).Status != compute.LeaseFaulted {
		t.Fatalf("order %+v: want the job faulted (no third provider to rule)", v)
	}
}

func TestCancelRefundsTheRest(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 3, 50_000, true)
	lease := f.lease(p).ID
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 300e6, WallNS: 1e9})
	f.result(p, lease, 0, "zero")
	v, err := f.b.Cancel(f.ctx, tenant, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The running lease stops at its next report, which is paid: a tenant cannot
	// take the outputs so far and cancel before the work is charged.
	if v.Status != compute.OrderCancelled || v.Closed || v.Charged != 300 {
		t.Fatalf("order %+v: want cancelled, not closed before the lease's last report, 300 charged", v)
	}
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 1e9, WallNS: 2e9}); !r.Stop || r.Charged != 1000 {
		t.Errorf("report after cancel: got %+v, want stop and the work up to it charged (1000 in all)", r)
	}
	v = f.orderView(tenant, o.ID)
	if v.Status != compute.OrderCancelled || !v.Closed || v.Charged != 1000 || v.Refunded != 49_000 || v.Leases[0].Status != compute.LeaseCancelled {
		t.Fatalf("order %+v: want cancelled, closed, 1000 charged, 49000 refunded", v)
	}
	f.checkBooks(map[string]int64{tenant: 100_000})
}

// TestCancelWithoutLastReport: a cancelled order's running lease whose provider does
// not report again ends an interval and a half after the cancel, with only what it
// reported charged.
func TestCancelWithoutLastReport(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 3, 50_000, true)
	lease := f.lease(p).ID
	pending := f.order(tenant, 1, 10_000, true) // leased, not yet fetched
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 300e6, WallNS: 1e9})
	for _, id := range []string{o.ID, pending.ID} {
		if _, err := f.b.Cancel(f.ctx, tenant, id); err != nil {
			t.Fatal(err)
		}
	}
	if v := f.orderView(tenant, pending.ID); !v.Closed || v.Refunded != 10_000 {
		t.Errorf("an order cancelled before it ran: %+v, want closed and all refunded", v)
	}
	f.clk.Add(time.Second)
	f.b.Tick(f.ctx)
	if v := f.orderView(tenant, o.ID); v.Closed {
		t.Fatalf("closed within an interval and a half of the cancel: %+v", v)
	}
	f.clk.Add(time.Second)
	f.b.Tick(f.ctx)
	v := f.orderView(tenant, o.ID)
	if !v.Closed || v.Charged != 300 || v.Refunded != 49_700 || v.Leases[0].Status != compute.LeaseCancelled {
		t.Fatalf("order %+v: want closed with what was reported (300) charged and 49700 refunded", v)
	}
	f.checkBooks(map[string]int64{tenant: 100_000})
}

func TestManualAcceptAndOffers(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000)
	cheap, dear := f.provider("cheap", 1, satPerMS), f.provider("dear", 2, 5*satPerMS)
	f.provider("toodear", 3, 50*satPerMS)
	req := compute.OrderRequest{Module: module, Units: [][]byte{{1}}, Cores: 1, Memory: 1 << 20, MaxPrice: 10 * satPerMS, Budget: 10_000, Manual: true, NoVerify: true}
	o, err := f.b.PlaceOrder(f.ctx, tenant, req)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != compute.OrderOpen {
		t.Fatalf("manual order: status %s, want open", o.Status)
	}
	offers, err := f.b.OrderOffers(tenant, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 2 || offers[0].Provider != cheap.id || offers[1].Provider != dear.id {
		t.Fatalf("offers that fit: %+v, want cheap then dear (not the one above the max price)", offers)
	}
	o, err = f.b.Accept(tenant, o.ID, dear.id)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != compute.OrderRunning || o.Leases[0].Provider != dear.id || o.Leases[0].Price != 5*satPerMS {
		t.Fatalf("accepted order %+v: want running on dear at its price", o)
	}
	if _, err := f.b.Accept(tenant, o.ID, cheap.id); err == nil {
		t.Errorf("second accept of a running order succeeded")
	}
	// An order that fits no offer waits open, and takes the first that appears.
	req.Manual, req.MaxPrice = false, satPerMS/2
	o2, err := f.b.PlaceOrder(f.ctx, tenant, req)
	if err != nil {
		t.Fatal(err)
	}
	if o2.Status != compute.OrderOpen {
		t.Fatalf("order below every offer: %s, want open", o2.Status)
	}
	cheapest := f.provider("cheapest", 4, satPerMS/4)
	if v := f.orderView(tenant, o2.ID); v.Status != compute.OrderRunning || v.Leases[0].Provider != cheapest.id {
		t.Errorf("after a fitting offer registered: %+v, want running on it", v)
	}
}

func TestOrderValidation(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000)
	good := compute.OrderRequest{Module: module, Units: [][]byte{{1}}, Cores: 1, Memory: 1 << 20, MaxPrice: 1, Budget: 500}
	for name, mut := range map[string]func(*compute.OrderRequest){
		"not wasm":        func(r *compute.OrderRequest) { r.Module = []byte("#!/bin/sh") },
		"no units":        func(r *compute.OrderRequest) { r.Units = nil },
		"no cores":        func(r *compute.OrderRequest) { r.Cores = 0 },
		"no budget":       func(r *compute.OrderRequest) { r.Budget = 0 },
		"negative price":  func(r *compute.OrderRequest) { r.MaxPrice = -1 },
		"over balance":    func(r *compute.OrderRequest) { r.Budget = 1_001 },
		"too many units":  func(r *compute.OrderRequest) { r.Units = make([][]byte, compute.MaxUnits+1) },
		"unit too large":  func(r *compute.OrderRequest) { r.Units = [][]byte{make([]byte, compute.MaxUnitBytes+1)} },
		"too little mem.": func(r *compute.OrderRequest) { r.Memory = 1 },
	} {
		r := good
		mut(&r)
		if _, err := f.b.PlaceOrder(f.ctx, tenant, r); err == nil {
			t.Errorf("%s: order accepted", name)
		}
	}
	if got := f.balance("market:buyer:" + tenant); got != 1_000 {
		t.Errorf("refused orders took %d sat", 1_000-got)
	}
	if _, err := f.b.PlaceOrder(f.ctx, tenant, good); err != nil {
		t.Errorf("good order: %v", err)
	}
}

func TestRestartRefundsOrphanedEscrow(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 2, 50_000, true)
	lease := f.lease(p).ID
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 400e6, WallNS: 1e9})
	// The market restarts: a new book on the same ledger.
	for range 2 {
		if _, err := compute.New(compute.Config{Ledger: f.led, Accounts: f.m, Network: regtest, Now: f.clk.Now}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.balance("compute:escrow:" + o.ID); got != 0 {
		t.Errorf("escrow after the restart: %d, want 0", got)
	}
	if got := f.balance("market:buyer:" + tenant); got != 100_000-400 {
		t.Errorf("tenant after the restart: %d, want %d (all but the 400 held for the reported work)", got, 100_000-400)
	}
	if got := f.balance("compute:held:" + lease); got != 400 {
		t.Errorf("held after the restart: %d, want 400 left for the operator", got)
	}
	if err := f.led.Check(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestClosedOrdersAreForgottenAfterRetention(t *testing.T) {
	f := newFixture(t, compute.Config{Retention: time.Hour})
	tenant, _ := f.account(100_000)
	o := f.order(tenant, 1, 1_000, true)
	if _, err := f.b.Cancel(f.ctx, tenant, o.ID); err != nil {
		t.Fatal(err)
	}
	f.clk.Add(time.Hour)
	f.b.Tick(f.ctx)
	if _, err := f.b.Order(tenant, o.ID); err != nil {
		t.Fatalf("order gone before its retention: %v", err)
	}
	f.clk.Add(time.Second)
	f.b.Tick(f.ctx)
	if _, err := f.b.Order(tenant, o.ID); err == nil {
		t.Errorf("closed order still kept after its retention")
	}
	if got := f.balance("market:buyer:" + tenant); got != 100_000 {
		t.Errorf("tenant balance %d after a cancelled order, want 100000", got)
	}
}

func TestCheckThatFinishesFirstIsNotRepeated(t *testing.T) {
	f, ps := spotFixture(t)
	tenant, _ := f.account(1_000_000)
	o := f.order(tenant, 3, 100_000, false)
	job, check := f.lease(ps[0]), f.lease(ps[1])
	f.clk.Add(time.Second)
	f.result(ps[1], check.ID, 0, "same")
	f.report(ps[1], check.ID, compute.UsageReport{Seq: 1, CPUNS: 100e6, WallNS: 1e9, Final: true})
	f.b.Tick(f.ctx)
	if v := f.orderView(tenant, o.ID); len(v.Leases) != 2 {
		t.Fatalf("leases %+v: a check that ran its units before the job did was started again", v.Leases)
	}
	for u := range 3 {
		f.result(ps[0], job.ID, u, "same")
	}
	f.report(ps[0], job.ID, compute.UsageReport{Seq: 1, CPUNS: 1e9, WallNS: 1e9, Final: true})
	if v := f.orderView(tenant, o.ID); v.Verdict != "pass" || v.Checked != 1 || !v.Closed {
		t.Errorf("order %+v: want verdict pass on one unit, closed", v)
	}
}

func TestPollsPerProviderLimited(t *testing.T) {
	f := newFixture(t, compute.Config{})
	p := f.provider("p", 1, satPerMS)
	var wg sync.WaitGroup
	for range compute.MaxPolls {
		wg.Go(func() { f.b.Work(f.ctx, p.acct, p.id, 2*time.Second) })
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := f.b.Work(f.ctx, p.acct, p.id, 0)
		if hashgrid.ErrorCode(err) == hashgrid.ERATELIMITED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a poll beyond %d waiting ones: %v, want rate limited", compute.MaxPolls, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if _, err := f.b.Work(f.ctx, p.acct, p.id, 0); err != nil {
		t.Errorf("a poll once the others returned: %v", err)
	}
}

// TestSettlementPostedButNotRecorded is a settlement that reached the ledger while
// its answer was lost: the key is taken with another amount than the book plans
// next. The book takes what the ledger holds and charges the rest later, so nothing is
// charged twice or lost.
func TestSettlementPostedButNotRecorded(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.order(tenant, 1, 50_000, true)
	lease := f.lease(p).ID
	if _, err := f.led.Post(f.ctx, ledger.Tx{Key: "compute:settle:" + lease + ":0", Postings: []ledger.Posting{
		{Account: "compute:escrow:" + o.ID, Amount: -300}, {Account: "compute:held:" + lease, Amount: 300}}}); err != nil {
		t.Fatal(err)
	}
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 500e6, WallNS: 1e9}); r.Charged != 300 {
		t.Fatalf("report over a taken key: charged %d, want the 300 the ledger holds", r.Charged)
	}
	f.clk.Add(time.Second)
	if r := f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 600e6, WallNS: 2e9, Final: true}); r.Charged != 600 {
		t.Fatalf("next report: charged %d, want 600 in all", r.Charged)
	}
	if got := f.balance("market:buyer:" + tenant); got != 100_000-600 {
		t.Errorf("tenant balance %d, want %d", got, 100_000-600)
	}
	f.checkBooks(map[string]int64{tenant: 100_000})
}

func TestTiebreakWaitsForABusyThirdProvider(t *testing.T) {
	f, ps := spotFixture(t)
	tenant, _ := f.account(1_000_000)
	// The third provider's two cores are taken by other orders.
	var busy []compute.OrderView
	for range 2 {
		v, err := f.b.PlaceOrder(f.ctx, tenant, compute.OrderRequest{Module: module, Units: [][]byte{{9}}, Cores: 1, Memory: 1 << 20,
			MaxPrice: 10 * satPerMS, Budget: 10_000, Provider: ps[2].id, NoVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		busy = append(busy, v)
	}
	o := f.order(tenant, 2, 100_000, false)
	job, check := f.lease(ps[0]), f.lease(ps[1])
	f.result(ps[0], job.ID, 0, "one")
	f.result(ps[1], check.ID, 0, "other")
	f.b.Tick(f.ctx)
	if v := f.orderView(tenant, o.ID); v.Status != compute.OrderRunning || len(v.Leases) != 2 {
		t.Fatalf("order %+v: want the job still running while the third provider is busy", v)
	}
	for _, v := range busy {
		if _, err := f.b.Cancel(f.ctx, tenant, v.ID); err != nil {
			t.Fatal(err)
		}
	}
	f.b.Tick(f.ctx)
	var tie compute.LeaseWork
	for _, w := range f.work(ps[2]) {
		if len(w.Units) == 1 && bytes.Equal(w.Units[0], []byte{0}) {
			tie = w
		}
	}
	if tie.ID == "" {
		t.Fatal("no tie-break lease on the third provider once it had room")
	}
	f.result(ps[2], tie.ID, 0, "one")
	v := f.orderView(tenant, o.ID)
	if l := findLease(t, v, ps[1].id); l.Status != compute.LeaseFaulted {
		t.Errorf("the check that disagreed with two providers: %+v, want faulted", l)
	}
	if v.Status == compute.OrderFailed {
		t.Errorf("order %+v: the job agreed with the tie-break and must not fail", v)
	}
}
