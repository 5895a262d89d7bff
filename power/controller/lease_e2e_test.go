package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/computetest"
	"github.com/hashgrid/hashgrid/compute/model"
	modelwasm "github.com/hashgrid/hashgrid/compute/model/wasm"
	"github.com/hashgrid/hashgrid/compute/provider"
	"github.com/hashgrid/hashgrid/compute/sandbox"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/controller"
	"github.com/hashgrid/hashgrid/power/ercot"
	"github.com/hashgrid/hashgrid/power/minersim"
)

func TestMain(m *testing.M) { computetest.Main(m) }

// corePrice is the providers' floor: one sat per CPU millisecond, in sat per core-hour.
const corePrice = 3_600_000

// leaseSite is two machines of 100 TH/s at 3,250 W that can also lease one core each
// at 100 W. At $5 per BTC and difficulty 3.2e9 the hashprice is $0.0982 per TH/s·day:
// mining earns $0.2005 an interval and draws 1,625 Wh. Leasing both cores at the floor
// with the market fully occupied earns 3.6e6 × 0.98 × 2 × ¼ h × $5 / 10⁸ = $0.0882 an
// interval and draws 50 Wh. So at $5/MWh the group mines ($0.1924 against $0.0880),
// at $125/MWh it leases ($0.0820 against −$0.0026 mining and −$0.0008 asleep; a rate
// earned above 7% of the floor would do, so the test does not hang on how busy the
// machine's CPUs are), and at $3,000/MWh, past the shed price, it sheds: leasing
// cannot earn the $0.15 its energy costs.
const leaseSite = `
name = "hybrid-site"
zone = "LZ_WEST"
capacity_mw = 1.0
pool_fee = 0.02
shed_price = 1000.0
shed_within = "10s"
stale_after = "30m"
[prices]
poll = "20ms"
[bitcoin]
difficulty = 3.2e9
btc_usd = 5.0
fees_btc_per_block = 0.0
[[group]]
name = "hybrid"
count = 2
min_on = "15m"
min_off = "15m"
stagger_batch = 2
sleep_watts = 12
protocol = "luxos"
  [[group.mode]]
  name = "full"
  ths = 100.0
  watts = 3250.0
  profile = "default"
  [group.compute]
  market = "%s"
  controls = ["%s", "%s"]
  cores = 1
  watts = 100.0
  window = "3h"
  drain = "90s"
[control]
timeout = "2s"
retries = 3
backoff = "100ms"
verify_wait = "50ms"
`

type leaseRig struct {
	t      *testing.T
	m      *market.Market
	base   string
	runner sandbox.Runner
	ctx    context.Context
	cm     *computetest.Market
}

func newLeaseRig(t *testing.T) *leaseRig {
	cm := computetest.Start(t, compute.Config{Interval: 2 * time.Second})
	return &leaseRig{t: t, m: cm.Market, base: cm.Base, runner: cm.Runner, ctx: context.Background(), cm: cm}
}

func (r *leaseRig) account(deposit int64) string {
	r.t.Helper()
	_, key := r.cm.Account(r.t, deposit)
	return key
}

// agent starts a provider agent with its control endpoint on loopback and returns it
// with the endpoint's address.
func (r *leaseRig) agent(name string, payByte byte, paused bool) (*provider.Agent, string) {
	r.t.Helper()
	ag, err := provider.New(provider.Config{
		Client: &compute.Client{Base: r.base, Key: r.account(0), HTTP: &http.Client{Timeout: 30 * time.Second}},
		Name:   name, PayoutAddress: computetest.PayAddr(r.t, payByte), Price: corePrice,
		Resources: compute.Resources{Cores: 1, Memory: 1 << 30}, Runner: r.runner, Wait: time.Second, Paused: paused,
		Logger: slog.New(slog.NewTextHandler(testLog{T: r.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("agent", name),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ag.Run(ctx)
	}()
	r.t.Cleanup(func() { cancel(); <-done })
	ctl, err := ag.ServeControl(ctx, "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	waitUntil(r.t, 30*time.Second, name+" registered", func() bool { return ag.ID() != "" })
	return ag, ctl.String()
}

// testLog writes an agent's log to the test's.
type testLog = computetest.Log

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	computetest.WaitFor(t, timeout, what, cond)
}

// digitJob is an order of n units of the digit classifier, 50 rows each.
func digitJob(n int) compute.OrderRequest {
	ex := model.HeldOut()
	req := compute.OrderRequest{Module: modelwasm.Digits, Cores: 1, Memory: 128 << 20, MaxPrice: corePrice, Budget: 50_000_000, NoVerify: true}
	for u := range n {
		var in bytes.Buffer
		for i := range 50 {
			model.FormatDigit(&in, &ex[(u*50+i)%len(ex)].Digit)
		}
		req.Units = append(req.Units, in.Bytes())
	}
	return req
}

// safeBuffer is a bytes.Buffer for the controller's writes and the test's reads.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGroupMovesBetweenMiningAndLeasing is issue 19's check of the power controller
// moving a group between mining and leased compute, on loopback with real parts: a
// market with compute leasing served over HTTP, three provider agents running
// WebAssembly leases in the sandbox (two are the group's machines, with their control
// endpoints; the third is another provider whose lease keeps the market occupied),
// two emulated miners, and the controller on a replayed price feed: $5, $125, $5,
// $125, a $3,000 spike, $125, and then no new price
// (a stale feed).
func TestGroupMovesBetweenMiningAndLeasing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs leases in the sandbox")
	}
	r := newLeaseRig(t)
	tenant := &compute.Client{Base: r.base, Key: r.account(1_000_000_000)}
	// The other provider is busy all along with a long job: the market's only offer
	// while the group mines, fully occupied.
	other, _ := r.agent("other", 9, false)
	long, err := tenant.PlaceOrder(r.ctx, digitJob(3000))
	if err != nil {
		t.Fatal(err)
	}
	if long.Status != compute.OrderRunning || long.Leases[0].Provider != other.ID() {
		t.Fatalf("long job: %+v, want running on the other provider", long)
	}
	t.Cleanup(func() { tenant.Cancel(context.Background(), long.ID) })
	a0, ctl0 := r.agent("hybrid-0", 1, true)
	a1, ctl1 := r.agent("hybrid-1", 2, true)
	ours := map[string]bool{a0.ID(): true, a1.ID(): true}
	// A job that waits for a free core: the group's offers are paused.
	jobA, err := tenant.PlaceOrder(r.ctx, digitJob(60))
	if err != nil {
		t.Fatal(err)
	}
	if jobA.Status != compute.OrderOpen {
		t.Fatalf("job A while the group's offers are paused: %s, want open", jobA.Status)
	}

	fleet, err := minersim.Start(minersim.Config{Count: 2, SleepWatts: 12, Profiles: []minersim.Profile{{Name: "default", THs: 100, Watts: 3250}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	cfg, err := power.ReadConfig(strings.NewReader(fmt.Sprintf(leaseSite, r.base, ctl0, ctl1)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Groups[0].Endpoints = fleet.Addrs()
	// Market time follows a clock the test moves one interval per step, from now.
	t0 := time.Now().Truncate(power.IntervalLength).Add(-power.IntervalLength)
	var ivs []power.Interval
	for i, p := range []power.Price{5_00, 125_00, 5_00, 125_00, 3000_00, 125_00} {
		ivs = append(ivs, power.Interval{Start: t0.Add(time.Duration(i) * power.IntervalLength), Price: p})
	}
	feed, err := ercot.NewReplay(ivs, 1, t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	wall := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return wall }
	energy, report := &safeBuffer{}, &safeBuffer{}
	ctl, err := controller.New(controller.Options{Config: cfg, Feed: feed, Clock: clock, Energy: energy, Report: report,
		Logger: slog.New(slog.NewTextHandler(testLog{T: t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	step := func(i int) *controller.Step {
		t.Helper()
		mu.Lock()
		wall = t0.Add(time.Duration(i+1) * power.IntervalLength)
		mu.Unlock()
		st, err := ctl.Step(r.ctx)
		if err != nil || st == nil {
			t.Fatalf("step %d: %+v, %v; report:\n%s", i, st, err, report.String())
		}
		if st.Price != ivs[i].Price {
			t.Fatalf("step %d decided on price %s, want %s", i, st.Price, ivs[i].Price)
		}
		g := st.Groups[0]
		t.Logf("step %d at %s $/MWh: %s (%s), %d on, lease quote %+v, took %v, failures %v", i, st.Price, g.Mode, g.Reason, g.On, g.Lease, st.Took, st.Failures)
		if len(st.Failures) > 0 {
			t.Errorf("step %d: failures %v", i, st.Failures)
		}
		return st
	}
	// checkMarket holds the group's providers' paused flags at the market, read
	// independently of the controller.
	provKey := map[string]*provider.Agent{a0.ID(): a0, a1.ID(): a1}
	checkMarket := func(when string, paused bool) {
		t.Helper()
		for id, ag := range provKey {
			v, err := ag.Status(r.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if v.Paused != paused {
				t.Errorf("%s: provider %s paused %t at the market, want %t", when, id, v.Paused, paused)
			}
		}
		offers, err := tenant.Offers(r.ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, o := range offers {
			if ours[o.Provider] {
				n++
			}
		}
		if want := map[bool]int{true: 0, false: 2}[paused]; n != want {
			t.Errorf("%s: %d of the group's offers at the market, want %d", when, n, want)
		}
	}
	checkMiners := func(when string, asleep bool) {
		t.Helper()
		for _, s := range fleet.States() {
			if s.Asleep != asleep {
				t.Errorf("%s: miner %s asleep %t, want %t", when, s.Addr, s.Asleep, asleep)
			}
		}
	}

	// The market shows the other provider's offer, its one core leased.
	waitUntil(t, 60*time.Second, "the other provider's offer, fully leased", func() bool {
		offers, err := tenant.Offers(r.ctx)
		return err == nil && len(offers) == 1 && offers[0].Provider == other.ID() && offers[0].Free.Cores == 0
	})

	// $5: mining pays most.
	if g := step(0).Groups[0]; g.Mode != "full" || g.On != 2 || g.Lease == nil || g.Lease.Occupancy != 1 || g.Lease.RatePerCoreHour != 0.98*corePrice {
		t.Fatalf("$5: %+v, want mining, with leasing quoted at the floor on a fully occupied market", g)
	}
	checkMiners("$5", false)
	checkMarket("$5", true)

	// $125: leasing pays most. The miners sleep, then the offers resume, and the job
	// that waited is leased to one of the group's machines.
	if g := step(1).Groups[0]; g.Mode != power.Leased || g.On != 2 || g.Lease.Revenue != 88_200 {
		t.Fatalf("$125: %+v, want leased on both machines, quoted at $0.0882", g)
	}
	checkMiners("$125", true)
	checkMarket("$125", false)
	var leaseA compute.LeaseView
	waitUntil(t, 60*time.Second, "job A running on the group with a usage report", func() bool {
		v, err := tenant.Order(r.ctx, jobA.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Leases) == 0 {
			return false
		}
		leaseA = v.Leases[0]
		return leaseA.Status == compute.LeaseRunning && leaseA.Reports > 0
	})
	if !ours[leaseA.Provider] {
		t.Fatalf("job A leased to %s, not to the group", leaseA.Provider)
	}

	// $5 again: back to mining. The offers pause, and the running lease is not cut
	// off: the controller waits for it (drain 90 s) before it wakes the miners.
	// Watched from outside while the controller works: no miner may wake while job
	// A's lease still runs.
	watchCtx, stopWatch := context.WithCancel(r.ctx)
	var woke []string
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			v, err := tenant.Order(watchCtx, jobA.ID)
			if err == nil && v.Leases[0].Status == compute.LeaseRunning {
				for _, s := range fleet.States() {
					if !s.Asleep {
						woke = append(woke, s.Addr)
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	began := time.Now()
	if g := step(2).Groups[0]; g.Mode != "full" || g.On != 2 {
		t.Fatalf("$5 again: %+v, want mining on both machines", g)
	}
	took := time.Since(began)
	stopWatch()
	<-watched
	if len(woke) > 0 {
		t.Errorf("miners %v woke while job A's lease was still running", woke)
	}
	a, err := tenant.Order(r.ctx, jobA.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != compute.OrderDone || a.Leases[0].Status != compute.LeaseDone || a.Done != 60 {
		t.Fatalf("job A after the group went back to mining: %+v, want done, every unit run", a)
	}
	t.Logf("job A finished during the drain: step took %v; its lease %d ms wall, %d ms CPU, %d sat", took, a.Leases[0].WallMS, a.Leases[0].CPUMS, a.Leases[0].Charged)
	checkMiners("$5 again", false)
	checkMarket("$5 again", true)

	// $125 again: leasing, now priced from the group's own lease (job A) in the window.
	g := step(3).Groups[0]
	wantRate := float64(a.Leases[0].Charged) * 3_600_000 / float64(a.Leases[0].WallMS) * 0.98
	if g.Mode != power.Leased || math.Abs(g.Lease.RatePerCoreHour-wantRate) > 1e-9*wantRate {
		t.Fatalf("$125 again: %+v, want leased at the rate job A earned (%.1f sat per core-hour after the fee)", g, wantRate)
	}
	checkMiners("$125 again", true)
	checkMarket("$125 again", false)
	jobB, err := tenant.PlaceOrder(r.ctx, digitJob(2000))
	if err != nil {
		t.Fatal(err)
	}
	var leaseB compute.LeaseView
	waitUntil(t, 60*time.Second, "job B running on the group with a usage report", func() bool {
		v, err := tenant.Order(r.ctx, jobB.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Leases) == 0 {
			return false
		}
		leaseB = v.Leases[0]
		return leaseB.Status == compute.LeaseRunning && leaseB.Reports > 0
	})
	if !ours[leaseB.Provider] {
		t.Fatalf("job B leased to %s, not to the group", leaseB.Provider)
	}

	// $3,000: a spike at which nothing pays. The shed pauses the offers and hands job
	// B's lease back at once (no drain), and the miners stay asleep.
	began = time.Now()
	st := step(4)
	shedTook := time.Since(began)
	if g := st.Groups[0]; !st.Shed || g.Mode != power.Curtailed || g.Reason != "spike" {
		t.Fatalf("$3,000: %+v shed %t, want a spike shed", g, st.Shed)
	}
	if shedTook > cfg.ShedWithin.Duration {
		t.Errorf("shed took %v, stated within %v", shedTook, cfg.ShedWithin.Duration)
	}
	checkMiners("$3,000", true)
	checkMarket("$3,000", true)
	b := r.waitClosed(tenant, jobB.ID)
	if b.Status != compute.OrderFailed || b.Leases[0].Status != compute.LeaseIncomplete || b.Done >= 2000 || b.Refunded <= 0 ||
		b.Charged+b.Refunded != b.Budget {
		t.Fatalf("job B after the shed: %+v; want its lease handed back incomplete, the work metered charged and the rest refunded", b)
	}
	t.Logf("job B handed back: %d of %d units run, %d sat charged, %d refunded; shed took %v", b.Done, b.Units, b.Charged, b.Refunded, shedTook)
	if v, err := tenant.Order(r.ctx, long.ID); err != nil || v.Status != compute.OrderRunning {
		t.Errorf("the other provider's job: %+v, %v; want it still running (the controller touches only its group)", v, err)
	}

	// $125 once more: leasing. Then the feed goes quiet: past stale_after, the safe
	// rule curtails everything, leasing included.
	if g := step(5).Groups[0]; g.Mode != power.Leased {
		t.Fatalf("$125 after the spike: %+v, want leased", g)
	}
	checkMarket("$125 after the spike", false)
	mu.Lock()
	wall = wall.Add(cfg.StaleAfter.Duration + time.Minute)
	mu.Unlock()
	st, err = ctl.Step(r.ctx)
	if err != nil || st == nil || !st.Shed || st.Groups[0].Reason != "stale feed" || st.Groups[0].Mode != power.Curtailed || st.Groups[0].Lease != nil {
		t.Fatalf("stale feed: %+v, %v; want a stale-feed shed, with no quote asked", st, err)
	}
	checkMiners("stale feed", true)
	checkMarket("stale feed", true)

	// Energy records: the workload each interval's energy went to.
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(energy.String()), "\n") {
		var rec power.EnergyRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s/%s/%d/%d", rec.Mode, rec.Workload, rec.MachinesOn, rec.EnergyWh))
	}
	want := []string{"full/mining/2/1625", "leased/compute/2/50", "full/mining/2/1625", "leased/compute/2/50", "curtailed//0/6",
		"leased/compute/2/50", "leased/compute/2/50"} // the last leased state held through the two intervals before the feed went stale
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("energy records (mode/workload/machines/Wh): %v, want %v\n%s", got, want, energy.String())
	}
}

// waitClosed waits for an order to close.
func (r *leaseRig) waitClosed(c *compute.Client, id string) compute.OrderView {
	r.t.Helper()
	var v compute.OrderView
	waitUntil(r.t, 30*time.Second, "order "+id+" closed", func() bool {
		var err error
		if v, err = c.Order(r.ctx, id); err != nil {
			r.t.Fatal(err)
		}
		return v.Closed
	})
	return v
}
