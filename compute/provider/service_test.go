package provider_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
	modelwasm "github.com/hashgrid/hashgrid/compute/model/wasm"
)

// memPrice is one sat per MiB held for a second, in sat per GiB-hour.
const memPrice = 1024 * 3600

// ask sends one request to a service and waits for its answer (the first one waits
// for the module to start).
func (l *loop) ask(c *compute.Client, order string, body []byte) (compute.RequestView, error) {
	l.t.Helper()
	v, err := c.Request(l.ctx, order, body, compute.MaxWait)
	deadline := time.Now().Add(2 * time.Minute)
	for err == nil && (v.Status == compute.RequestQueued || v.Status == compute.RequestDelivered) {
		if time.Now().After(deadline) {
			l.t.Fatalf("request %s of order %s not answered", v.ID, order)
		}
		v, err = c.RequestStatus(l.ctx, order, v.ID, compute.MaxWait)
	}
	return v, err
}

func errCode(err error) string {
	var he *hashgrid.Error
	if errors.As(err, &he) {
		return he.Code
	}
	return ""
}

// TestServiceEndToEnd is issue 19's long-running service on loopback: the digit
// classifier, started once per lease in the sandbox's serve mode, answers many
// requests sent through the market with the native network's bytes; it is metered
// and charged per interval; a cancel stops it and refunds the rest; a budget that
// runs out stops it within an interval; a killed provider loses it and the tenant
// gets the rest back; requests over the size limit and to a stopped service are
// refused; and the ledger balances to the satoshi.
func TestServiceEndToEnd(t *testing.T) {
	l := newLoop(t)
	const deposit = 50_000_000
	tenant, tkey := l.account(deposit)
	var agents []*runningAgent
	for i, name := range []string{"svc-a", "svc-b", "svc-c"} {
		_, key := l.account(0)
		agents = append(agents, l.startAgentPriced(name, key, byte(10+i), satPerMS, memPrice, false))
	}
	pA, pB, pC := agents[0], agents[1], agents[2]
	tc := &compute.Client{Base: l.base, Key: tkey, HTTP: &http.Client{Timeout: 30 * time.Second}}
	place := func(budget int64, ag *runningAgent) compute.OrderView {
		t.Helper()
		v, err := tc.PlaceOrder(l.ctx, compute.OrderRequest{Kind: compute.KindService, Module: modelwasm.Digits, Args: []string{"serve"},
			Cores: 1, Memory: 256 << 20, MaxPrice: satPerMS, MaxMemPrice: memPrice, Budget: budget, Provider: ag.a.ID()})
		if err != nil {
			t.Fatal(err)
		}
		if v.Kind != compute.KindService || v.Service == nil || v.Service.State != compute.ServiceStarting {
			t.Fatalf("placed service: %+v", v)
		}
		return v
	}
	// intervalCost is what one interval of these leases can cost at most: the core
	// busy and the 256 MiB held.
	const intervalCost = 1000 + 256

	// Many requests, one after another and then from eight tenants' goroutines at
	// once, each answered with exactly what the native network prints.
	a := place(10_000_000, pA)
	units, want := digitUnits(t, 0, 200, 3)
	t0 := time.Now()
	first, err := l.ask(tc, a.ID, units[0])
	if err != nil || first.Status != compute.RequestDone || !bytes.Equal(first.Response, want[0]) {
		t.Fatalf("first request: %+v %v", first, err)
	}
	t.Logf("first answer (module started in the sandbox) after %v", time.Since(t0).Round(time.Millisecond))
	var lat []time.Duration
	for i := 1; i < 100; i++ {
		t1 := time.Now()
		v, err := l.ask(tc, a.ID, units[i])
		lat = append(lat, time.Since(t1))
		if err != nil || v.Status != compute.RequestDone || !bytes.Equal(v.Response, want[i]) {
			t.Fatalf("request %d: %+v %v; want %q", i, v, err, want[i])
		}
	}
	slices.Sort(lat)
	t.Logf("99 sequential requests through the market: median %v, p90 %v, max %v", lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1])
	var wg sync.WaitGroup
	t2 := time.Now()
	for g := range 8 {
		wg.Go(func() {
			for i := 100 + g; i < 200; i += 8 {
				v, err := l.ask(tc, a.ID, units[i])
				if err != nil || v.Status != compute.RequestDone || !bytes.Equal(v.Response, want[i]) {
					t.Errorf("concurrent request %d: %+v %v", i, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("100 requests from 8 goroutines at once in %v", time.Since(t2).Round(time.Millisecond))
	// A bad request is the module's to answer; the service goes on.
	if v, err := l.ask(tc, a.ID, []byte("not digits\n")); err != nil || v.Status != compute.RequestDone || !bytes.HasPrefix(v.Response, []byte("error: ")) {
		t.Fatalf("bad request: %+v %v", v, err)
	}
	// Over the size limit: refused by the market.
	if _, err := tc.Request(l.ctx, a.ID, make([]byte, compute.MaxRequestBytes+1), time.Second); errCode(err) != hashgrid.EINVALID {
		t.Fatalf("request over %d bytes: %v", compute.MaxRequestBytes, err)
	}

	// Metered and charged per interval, as a job is.
	v := l.waitOrder(tc, a.ID, "metered", 30*time.Second, func(v compute.OrderView) bool { return v.Leases[0].Reports >= 3 })
	ls := v.Leases[0]
	if v.Charged <= 0 || v.Charged != ls.Charged || ls.CPUMS <= 0 || ls.Kind != compute.KindService {
		t.Fatalf("metering: order charged %d, lease %+v", v.Charged, ls)
	}
	if s := v.Service; s.State != compute.ServiceRunning || s.Served != 201 || s.Failed != 0 || s.Restarts != 0 {
		t.Fatalf("service view %+v: want running, 201 served", s)
	}
	pv, err := pA.a.Status(l.ctx)
	if err != nil || len(pv.Leases) != 1 || pv.Leases[0].Service == nil || pv.Leases[0].Service.Served != 201 {
		t.Fatalf("provider's view: %+v %v", pv, err)
	}
	t.Logf("after %d reports: %d ms CPU, %d ms wall, %d sat charged", ls.Reports, ls.CPUMS, ls.WallMS, ls.Charged)

	// Cancel: the service stops and the rest is refunded; requests fail clearly.
	if _, err := tc.Cancel(l.ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	tCancel := time.Now()
	if _, err := tc.Request(l.ctx, a.ID, units[0], time.Second); errCode(err) != hashgrid.ECONFLICT || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("request to a cancelled service: %v", err)
	}
	waitFor(t, 10*time.Second, "provider A to stop the service", func() bool { return len(pA.a.Running()) == 0 })
	t.Logf("provider stopped the cancelled service after %v", time.Since(tCancel).Round(time.Millisecond))
	v = l.waitOrder(tc, a.ID, "closed", 30*time.Second, func(v compute.OrderView) bool { return v.Closed })
	if v.Status != compute.OrderCancelled || v.Refunded != v.Budget-v.Charged || v.Service.State != compute.ServiceStopped {
		t.Fatalf("cancelled service: %+v %+v", v, v.Service)
	}

	// A budget that runs out: stopped within an interval, the rest refunded.
	b := place(4_000, pB)
	if r, err := l.ask(tc, b.ID, units[0]); err != nil || !bytes.Equal(r.Response, want[0]) {
		t.Fatalf("budget service: %+v %v", r, err)
	}
	// Large requests keep its core busy until the market refuses them.
	big, bigWant := digitUnits(t, 0, 1, 5000)
	deadline := time.Now().Add(time.Minute)
	for n := 0; ; n++ {
		r, err := tc.Request(l.ctx, b.ID, big[0], compute.MaxWait)
		if err != nil {
			if errCode(err) != hashgrid.ECONFLICT || !strings.Contains(err.Error(), "budget") {
				t.Fatalf("request to an exhausted service: %v", err)
			}
			t.Logf("after %d requests of %d bytes: %v", n, len(big[0]), err)
			break
		}
		if r.Status == compute.RequestFailed && !strings.Contains(r.Err, "stopped") || r.Status == compute.RequestDone && !bytes.Equal(r.Response, bigWant[0]) {
			t.Fatalf("large request: %s %q", r.Status, r.Err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the budget did not run out")
		}
	}
	v = l.waitOrder(tc, b.ID, "exhausted", time.Minute, func(v compute.OrderView) bool { return v.Status == compute.OrderExhausted })
	tExhausted := time.Now()
	waitFor(t, 2*interval+time.Second, "provider B to stop the exhausted service", func() bool { return len(pB.a.Running()) == 0 })
	t.Logf("exhausted service stopped by its provider %v after the market ended it", time.Since(tExhausted).Round(time.Millisecond))
	if _, err := tc.Request(l.ctx, b.ID, units[0], time.Second); errCode(err) != hashgrid.ECONFLICT || !strings.Contains(err.Error(), "budget") {
		t.Fatalf("request to an exhausted service: %v", err)
	}
	v = l.waitOrder(tc, b.ID, "closed", 30*time.Second, func(v compute.OrderView) bool { return v.Closed })
	if v.Charged > v.Budget || v.Refunded != v.Budget-v.Charged || v.Refunded >= intervalCost {
		t.Fatalf("exhausted: budget %d, charged %d, refunded %d (an interval costs at most %d)", v.Budget, v.Charged, v.Refunded, intervalCost)
	}
	t.Logf("exhausted service: %d of %d sat charged over %d reports, %d refunded", v.Charged, v.Budget, v.Leases[0].Reports, v.Refunded)

	// A killed provider: the lease is lost, waiting requests fail, the rest returns.
	c := place(1_000_000, pC)
	if r, err := l.ask(tc, c.ID, units[1]); err != nil || !bytes.Equal(r.Response, want[1]) {
		t.Fatalf("service on C: %+v %v", r, err)
	}
	pC.kill(t)
	pending, err := tc.Request(l.ctx, c.ID, units[2], 0)
	if err != nil || pending.Status != compute.RequestQueued {
		t.Fatalf("request to a killed provider's service: %+v %v", pending, err)
	}
	v = l.waitOrder(tc, c.ID, "lost", 30*time.Second, func(v compute.OrderView) bool { return v.Status == compute.OrderLost })
	r, err := tc.RequestStatus(l.ctx, c.ID, pending.ID, 0)
	if err != nil || r.Status != compute.RequestFailed || !strings.Contains(r.Err, "lost") {
		t.Fatalf("request waiting when the service was lost: %+v %v", r, err)
	}
	if _, err := tc.Request(l.ctx, c.ID, units[0], time.Second); errCode(err) != hashgrid.ECONFLICT {
		t.Fatalf("request to a lost service: %v", err)
	}
	v = l.waitOrder(tc, c.ID, "closed", 30*time.Second, func(v compute.OrderView) bool { return v.Closed })
	if v.Refunded != v.Budget-v.Charged || v.Refunded <= 0 || v.Service.Failed != 1 {
		t.Fatalf("lost service: %+v %+v", v, v.Service)
	}
	log, err := tc.Log(l.ctx, c.ID)
	if err != nil || !slices.ContainsFunc(log, func(s string) bool { return strings.Contains(s, "service stopped: lost") }) {
		t.Fatalf("order log: %q %v", log, err)
	}

	// The books: what the tenant paid is what providers earned plus the fee.
	paid, earned, fee := l.checkBooks(deposit, []string{tenant}, agents)
	var charged int64
	for _, o := range l.b.Orders(tenant) {
		charged += o.Charged
	}
	if paid != charged {
		t.Errorf("tenant paid %d sat; its orders were charged %d", paid, charged)
	}
	t.Logf("tenant paid %d sat: providers earned %d, fee %d", paid, earned, fee)
}

// probeModule builds compute/sandbox's test module (its "serve" mode keeps a count
// of requests and crashes when asked) for wasip1.
func probeModule(t *testing.T) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the probe module: %v", err)
	}
	out := filepath.Join(t.TempDir(), "probe.wasm")
	cmd := exec.Command(goBin, "build", "-o", out, "../sandbox/testdata/probe")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServiceCrashRestarts: a service that crashes fails the request it was
// answering, is started again by the agent (a fresh process: its state is gone)
// and goes on answering, up to compute.MaxServiceRestarts times; the crash after
// that ends the lease, fails the order and refunds the rest.
func TestServiceCrashRestarts(t *testing.T) {
	l := newLoop(t)
	const deposit = 10_000_000
	tenant, tkey := l.account(deposit)
	_, pkey := l.account(0)
	ag := l.startAgent("svc-crash", pkey, 20, satPerMS, false)
	tc := &compute.Client{Base: l.base, Key: tkey, HTTP: &http.Client{Timeout: 30 * time.Second}}
	probe := probeModule(t)
	o, err := tc.PlaceOrder(l.ctx, compute.OrderRequest{Kind: compute.KindService, Module: probe, Args: []string{"serve"},
		Cores: 1, Memory: 256 << 20, MaxPrice: satPerMS, Budget: 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	count := func(want string) {
		t.Helper()
		r, err := l.ask(tc, o.ID, []byte("count"))
		if err != nil || r.Status != compute.RequestDone || string(r.Response) != want {
			t.Fatalf("count: %+v %v, want %q", r, err, want)
		}
	}
	count("1")
	count("2")
	for i := 1; i <= compute.MaxServiceRestarts+1; i++ {
		r, err := l.ask(tc, o.ID, []byte("crash"))
		if err != nil || r.Status != compute.RequestFailed || !strings.Contains(r.Err, "exit 2") {
			t.Fatalf("crash %d: %+v %v", i, r, err)
		}
		t.Logf("crash %d: %s", i, r.Err)
		if i <= compute.MaxServiceRestarts {
			count("1") // a new process
		}
	}
	v := l.waitOrder(tc, o.ID, "failed and closed", 30*time.Second, func(v compute.OrderView) bool { return v.Closed })
	if v.Status != compute.OrderFailed || v.Leases[0].Status != compute.LeaseEnded || !strings.Contains(v.Reason, "crashed") ||
		v.Service.Restarts != compute.MaxServiceRestarts || v.Service.Served != 2+compute.MaxServiceRestarts || v.Service.Failed != compute.MaxServiceRestarts+1 ||
		v.Refunded != v.Budget-v.Charged {
		t.Fatalf("order after the last crash: %+v %+v", v, v.Service)
	}
	t.Logf("order: %s (%s); %d sat charged, %d refunded", v.Status, v.Reason, v.Charged, v.Refunded)
	waitFor(t, 5*time.Second, "the agent to drop the lease", func() bool { return len(ag.a.Running()) == 0 })
	if _, err := tc.Request(l.ctx, o.ID, []byte("count"), time.Second); errCode(err) != hashgrid.ECONFLICT {
		t.Fatalf("request to an ended service: %v", err)
	}
	charged := v.Charged

	// A service that exits with no request under way crashes all the same: the
	// agent notices, restarts it, and ends the lease after the last restart.
	idle, err := tc.PlaceOrder(l.ctx, compute.OrderRequest{Kind: compute.KindService, Module: probe, Args: []string{"exit", "5"},
		Cores: 1, Memory: 256 << 20, MaxPrice: satPerMS, Budget: 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	v = l.waitOrder(tc, idle.ID, "failed and closed", time.Minute, func(v compute.OrderView) bool { return v.Closed })
	if v.Status != compute.OrderFailed || !strings.Contains(v.Reason, "ended while idle; exit 5") || v.Service.Restarts != compute.MaxServiceRestarts ||
		v.Service.Failed != 0 || v.Refunded != v.Budget-v.Charged {
		t.Fatalf("idle crashes: %+v %+v", v, v.Service)
	}
	t.Logf("idle crashes: %s (%s)", v.Status, v.Reason)
	charged += v.Charged
	if bal, _ := l.led.Balance(l.ctx, "market:buyer:"+tenant); bal != deposit-charged {
		t.Errorf("tenant balance %d, want %d", bal, deposit-charged)
	}
}
