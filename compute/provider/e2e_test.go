package provider_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/computetest"
	"github.com/hashgrid/hashgrid/compute/model"
	modelwasm "github.com/hashgrid/hashgrid/compute/model/wasm"
	"github.com/hashgrid/hashgrid/compute/provider"
	"github.com/hashgrid/hashgrid/compute/sandbox"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/registry"
)

func TestMain(m *testing.M) { computetest.Main(m) }

var regtest = &chaincfg.RegressionNetParams

// satPerMS is a price of one sat per CPU millisecond, in sat per core-hour.
const satPerMS = 3_600_000

const interval = time.Second

// loop is a market with compute leasing on loopback, and the agents started on it.
type loop struct {
	t      *testing.T
	m      *market.Market
	led    *ledger.Ledger
	b      *compute.Book
	base   string
	runner sandbox.Runner
	ctx    context.Context
	cm     *computetest.Market
}

func newLoop(t *testing.T) *loop {
	cm := computetest.Start(t, compute.Config{Interval: interval, SampleBps: 2000})
	return &loop{t: t, m: cm.Market, led: cm.Ledger, b: cm.Book, base: cm.Base, runner: cm.Runner, ctx: context.Background(), cm: cm}
}

func (l *loop) account(deposit int64) (id, key string) {
	l.t.Helper()
	return l.cm.Account(l.t, deposit)
}

func payAddr(t *testing.T, i byte) string { return computetest.PayAddr(t, i) }

// runningAgent is a provider agent running on its own context.
type runningAgent struct {
	a      *provider.Agent
	addr   string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	jobLog *lockedBuffer // the agent's job log (device group: its name)
}

// lockedBuffer is a bytes.Buffer safe for the agent's writes and the test's reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// kill ends the agent as a killed process would: its leases' processes die and it
// reports nothing more.
func (r *runningAgent) kill(t *testing.T) {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop")
	}
}

func (l *loop) startAgent(name, key string, addrByte byte, price int64, corrupt bool) *runningAgent {
	l.t.Helper()
	return l.startAgentPriced(name, key, addrByte, price, 0, corrupt)
}

// startAgentPriced starts an agent with a memory price too (sat per GiB-hour).
func (l *loop) startAgentPriced(name, key string, addrByte byte, price, memPrice int64, corrupt bool) *runningAgent {
	l.t.Helper()
	addr := payAddr(l.t, addrByte)
	jobLog := &lockedBuffer{}
	a, err := provider.New(provider.Config{
		JobLog: jobLog, DeviceGroup: name,
		Client: &compute.Client{Base: l.base, Key: key, HTTP: &http.Client{Timeout: 30 * time.Second}},
		Name:   name, PayoutAddress: addr, Price: price, MemPrice: memPrice,
		Resources: compute.Resources{Cores: 1, Memory: 1 << 30},
		Runner:    l.runner, Wait: 2 * time.Second, CorruptOutputsForTesting: corrupt,
		Logger: slog.New(slog.NewTextHandler(testLog{T: l.t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("agent", name),
	})
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{a: a, addr: addr, cancel: cancel, done: make(chan struct{}), jobLog: jobLog}
	go func() {
		defer close(r.done)
		if err := a.Run(ctx); err != nil {
			l.t.Errorf("agent %s: %v", name, err)
		}
	}()
	l.t.Cleanup(func() { cancel(); <-r.done })
	waitFor(l.t, 30*time.Second, "agent "+name+" registered", func() bool { return a.ID() != "" })
	return r
}

// testLog writes an agent's log to the test's.
type testLog = computetest.Log

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	computetest.WaitFor(t, timeout, what, cond)
}

// digitUnits cuts the model's held-out digits into n units of rows lines, from
// offset, and returns them with what the reference network (natively, in Go) answers
// for each: a provider's outputs must match these bytes exactly.
func digitUnits(t *testing.T, offset, n, rows int) (units [][]byte, want [][]byte) {
	ex := model.HeldOut()
	for u := range n {
		var in, out bytes.Buffer
		for i := range rows {
			d := ex[(offset+u*rows+i)%len(ex)].Digit
			if err := model.FormatDigit(&in, &d); err != nil {
				t.Fatal(err)
			}
		}
		if err := model.Default().Classify(&out, bytes.NewReader(in.Bytes())); err != nil {
			t.Fatal(err)
		}
		units, want = append(units, in.Bytes()), append(want, out.Bytes())
	}
	return units, want
}

// checkBooks checks the ledger once every order is closed: it balances, what the
// tenants (each given deposit) paid is what the agents earned plus the market's fee,
// to the satoshi, and no escrow, held or provider account keeps anything.
func (l *loop) checkBooks(deposit int64, tenants []string, agents []*runningAgent) (paid, earned, fee int64) {
	t := l.t
	t.Helper()
	if err := l.led.Check(l.ctx); err != nil {
		t.Fatal(err)
	}
	balance := func(acct string) int64 {
		n, err := l.led.Balance(l.ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, acct := range tenants {
		paid += deposit - balance("market:buyer:"+acct)
	}
	for _, ag := range agents {
		earned += balance("miner:" + ag.addr + ":balance")
	}
	fee = balance("compute:fees")
	if paid != earned+fee || paid <= 0 {
		t.Errorf("tenants paid %d sat; providers earned %d and the market's fee is %d (sum %d)", paid, earned, fee, earned+fee)
	}
	for _, prefix := range []string{"compute:escrow:", "compute:held:", "compute:provider:"} {
		bals, err := l.led.Balances(l.ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for a, n := range bals {
			if n != 0 {
				t.Errorf("%s holds %d sat with every order closed", a, n)
			}
		}
	}
	return paid, earned, fee
}

func (l *loop) waitOrder(c *compute.Client, id, what string, timeout time.Duration, cond func(compute.OrderView) bool) compute.OrderView {
	l.t.Helper()
	var v compute.OrderView
	waitFor(l.t, timeout, "order "+id+" "+what, func() bool {
		var err error
		if v, err = c.Order(l.ctx, id); err != nil {
			l.t.Fatal(err)
		}
		return cond(v)
	})
	return v
}

func jobLease(t *testing.T, v compute.OrderView) compute.LeaseView {
	t.Helper()
	for _, l := range v.Leases {
		if l.Kind == "job" {
			return l
		}
	}
	t.Fatalf("order %s has no job lease", v.ID)
	return compute.LeaseView{}
}

// TestLeasingEndToEnd is issue 19's check on loopback: a market, three providers
// and two tenants; a batch of inference jobs (the model's digit classifier, run as
// WebAssembly in the sandbox) runs to completion, paid per metered interval, with
// outputs identical to the native network's; a provider killed mid-lease loses it
// and the tenant gets the rest back; a provider returning wrong results is caught by
// a spot check; a lease whose budget runs out stops within an interval; and the
// ledger balances to the satoshi.
func TestLeasingEndToEnd(t *testing.T) {
	l := newLoop(t)
	const deposit = 100_000_000
	tenantA, keyA := l.account(deposit)
	tenantB, keyB := l.account(deposit)
	_, key0 := l.account(0)
	_, key1 := l.account(0)
	_, key2 := l.account(0)
	tenants := []*compute.Client{{Base: l.base, Key: keyA}, {Base: l.base, Key: keyB}}

	p0 := l.startAgent("honest-0", key0, 10, satPerMS, false)
	p1 := l.startAgent("honest-1", key1, 11, 2*satPerMS, false)

	// A batch of inference jobs, two per tenant.
	type job struct {
		c    *compute.Client
		id   string
		want [][]byte
		at   time.Time
	}
	var jobs []job
	for i := range 4 {
		units, want := digitUnits(t, i*400, 8, 50)
		c := tenants[i%2]
		at := time.Now()
		v, err := c.PlaceOrder(l.ctx, compute.OrderRequest{Module: modelwasm.Digits, Units: units, Cores: 1, Memory: 128 << 20,
			MaxPrice: 3 * satPerMS, Budget: 10_000_000})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{c, v.ID, want, at})
	}
	var firstResult time.Duration
	for i, j := range jobs {
		if i == 0 {
			waitFor(t, 60*time.Second, "the first result", func() bool {
				outs, err := j.c.Outputs(l.ctx, j.id)
				if err != nil {
					t.Fatal(err)
				}
				return slices.ContainsFunc(outs, func(o compute.UnitOutput) bool { return o.Done })
			})
			firstResult = time.Since(j.at)
		}
		v := l.waitOrder(j.c, j.id, "closed", 120*time.Second, func(v compute.OrderView) bool { return v.Closed })
		if v.Status != compute.OrderDone || v.Verdict != "pass" || v.Checked < 1 {
			t.Fatalf("job %d: %+v: want done, spot check passed", i, v)
		}
		outs, err := j.c.Outputs(l.ctx, j.id)
		if err != nil {
			t.Fatal(err)
		}
		for u, o := range outs {
			if !o.Done || o.ExitCode != 0 || o.Err != "" || !bytes.Equal(o.Stdout, j.want[u]) {
				t.Fatalf("job %d unit %d: %+v\nwant stdout %q", i, u, o, j.want[u])
			}
		}
		// Paid per metered interval: the job's charge is the sum of its settlements.
		jl := jobLease(t, v)
		es, err := l.led.Entries(l.ctx, "compute:held:"+jl.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		settles := 0
		for _, e := range es {
			if strings.HasPrefix(e.Key, "compute:settle:") {
				settles++
			}
		}
		if jl.Charged <= 0 || settles < 1 || uint64(settles) > jl.Reports {
			t.Errorf("job %d lease %+v: %d settlements; want a positive charge settled report by report", i, jl, settles)
		}
		t.Logf("job %d: %d units in %d ms of CPU, %d ms of wall, %d reports, %d settlements, %d sat", i, jl.Units, jl.CPUMS, jl.WallMS, jl.Reports, settles, jl.Charged)
		// The provider's job log, which the site's registry imports (registry
		// import-jobs), records the lease as a job of its device group with the CPU
		// time the market metered and a hash of the outputs the tenant got.
		var rec *registry.JobRecord
		waitFor(t, 10*time.Second, "job "+jl.ID+" in its provider's job log", func() bool {
			for _, ag := range []*runningAgent{p0, p1} {
				if ag.a.ID() != jl.Provider {
					continue
				}
				recs, _, err := registry.ParseJobs(bytes.NewReader(ag.jobLog.Bytes()), "site")
				if err != nil {
					t.Fatalf("job log of %s: %v", ag.a.ID(), err)
				}
				for k := range recs {
					if recs[k].Job == jl.ID {
						rec = &recs[k]
					}
				}
			}
			return rec != nil
		})
		h := sha256.New()
		for _, w := range j.want {
			o := sha256.Sum256(w)
			h.Write(o[:])
		}
		if wantMH := (jl.CPUMS + 1800) / 3600; rec.CPUMilliHours < wantMH-1 || rec.CPUMilliHours > wantMH+1 || rec.OutputsSHA256 != hex.EncodeToString(h.Sum(nil)) {
			t.Errorf("job log record %+v; want %d CPU milli-hours (%d ms metered) and the outputs' hash", *rec, wantMH, jl.CPUMS)
		}
	}
	t.Logf("submission to first result: %s", firstResult.Round(time.Millisecond))

	// A provider killed mid-lease loses it; the tenant gets the rest back.
	units, _ := digitUnits(t, 0, 40, 50)
	v, err := tenants[0].PlaceOrder(l.ctx, compute.OrderRequest{Module: modelwasm.Digits, Units: units, Cores: 1, Memory: 128 << 20,
		MaxPrice: 3 * satPerMS, Budget: 10_000_000, NoVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if jobLease(t, v).Provider != p0.a.ID() {
		t.Fatalf("the long job went to %s, want the cheapest provider %s", jobLease(t, v).Provider, p0.a.ID())
	}
	l.waitOrder(tenants[0], v.ID, "under way", 60*time.Second, func(v compute.OrderView) bool {
		jl := jobLease(t, v)
		return jl.Reports >= 1 && jl.Done >= 1
	})
	p0.kill(t)
	killed := time.Now()
	v = l.waitOrder(tenants[0], v.ID, "lost and closed", 30*time.Second, func(v compute.OrderView) bool { return v.Closed })
	if v.Status != compute.OrderLost || jobLease(t, v).Status != compute.LeaseLost {
		t.Fatalf("order after its provider was killed: %+v, want lost", v)
	}
	if v.Charged <= 0 || v.Refunded != v.Budget-v.Charged || v.Done >= len(units) {
		t.Errorf("lost order: charged %d, refunded %d of %d, %d units done: want the unearned rest refunded", v.Charged, v.Refunded, v.Budget, v.Done)
	}
	if took := time.Since(killed); took > 6*interval {
		t.Errorf("lease lost %s after the kill, want within about %d intervals", took, 4)
	} else {
		t.Logf("killed provider's lease lost and closed %s after the kill: %d of %d units done, %d sat charged, %d refunded",
			took.Round(time.Millisecond), v.Done, len(units), v.Charged, v.Refunded)
	}

	// A provider that returns wrong results is caught by a spot check: it is the
	// cheapest, so it gets the job; a restarted honest provider re-runs the sample
	// and a third rules.
	p0 = l.startAgent("honest-0", key0, 10, satPerMS, false)
	liar := l.startAgent("liar", key2, 12, satPerMS/2, true)
	units, _ = digitUnits(t, 100, 5, 50)
	v, err = tenants[1].PlaceOrder(l.ctx, compute.OrderRequest{Module: modelwasm.Digits, Units: units, Cores: 1, Memory: 128 << 20,
		MaxPrice: 3 * satPerMS, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if jobLease(t, v).Provider != liar.a.ID() {
		t.Fatalf("the job went to %s, want the liar %s (cheapest)", jobLease(t, v).Provider, liar.a.ID())
	}
	v = l.waitOrder(tenants[1], v.ID, "closed", 120*time.Second, func(v compute.OrderView) bool { return v.Closed })
	if lines, err := tenants[1].Log(l.ctx, v.ID); err == nil {
		t.Logf("the liar's order:\n%s", strings.Join(lines, "\n"))
	}
	jl := jobLease(t, v)
	if v.Status != compute.OrderFailed || v.Verdict != "fault" || jl.Status != compute.LeaseFaulted || jl.Settled != "forfeited" {
		t.Fatalf("order run by the liar: %+v, want failed, job faulted and forfeited", v)
	}
	lv, err := liar.a.Status(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !lv.Marked || lv.Earned != 0 || lv.Payable != 0 {
		t.Errorf("liar %+v: want marked, nothing earned", lv)
	}

	// A lease whose budget runs out stops within an interval. An interval of one busy
	// core costs 1000 sat; 2500 pays two and a half.
	units, _ = digitUnits(t, 0, 40, 50)
	v, err = tenants[1].PlaceOrder(l.ctx, compute.OrderRequest{Module: modelwasm.Digits, Units: units, Cores: 1, Memory: 128 << 20,
		MaxPrice: 3 * satPerMS, Budget: 2_500, NoVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	runner := p0
	if jobLease(t, v).Provider == p1.a.ID() {
		runner = p1
	}
	v = l.waitOrder(tenants[1], v.ID, "exhausted", 60*time.Second, func(v compute.OrderView) bool { return v.Status == compute.OrderExhausted })
	exhausted := time.Now()
	lease := jobLease(t, v).ID
	waitFor(t, interval, "the agent to stop the exhausted lease", func() bool { return !slices.Contains(runner.a.Running(), lease) })
	t.Logf("exhausted lease stopped %s after the market said so", time.Since(exhausted).Round(time.Millisecond))
	v = l.waitOrder(tenants[1], v.ID, "closed", 10*time.Second, func(v compute.OrderView) bool { return v.Closed })
	if v.Charged > v.Budget || v.Charged+v.Refunded != v.Budget || v.Done >= len(units) {
		t.Errorf("exhausted order: charged %d + refunded %d of %d with %d of %d units: want at most the budget, the rest back", v.Charged, v.Refunded, v.Budget, v.Done, len(units))
	}

	// The books: to the satoshi.
	waitFor(t, 30*time.Second, "every order closed", func() bool {
		for _, acct := range []string{tenantA, tenantB} {
			for _, o := range l.b.Orders(acct) {
				if !o.Closed {
					return false
				}
			}
		}
		return true
	})
	paid, earned, fee := l.checkBooks(deposit, []string{tenantA, tenantB}, []*runningAgent{p0, p1, liar})
	t.Logf("tenants paid %d sat: providers earned %d, fee %d", paid, earned, fee)

	// The pool's payout engine pays the providers' earnings from the same book, as it
	// pays miners (here into an exported batch: no wallet on loopback).
	dir := t.TempDir()
	svc, err := payout.Open(payout.Config{Scheme: payout.PPLNS, Network: regtest, PoolAddress: payAddr(t, 99), Window: 1 << 40,
		PayoutThreshold: 1, ExportDir: filepath.Join(dir, "payouts")}, filepath.Join(dir, "payout.db"), l.led, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	want := map[string]int64{}
	for _, ag := range []*runningAgent{p0, p1, liar} {
		if n, _ := l.led.Balance(l.ctx, payout.MinerAccount(ag.addr, "balance")); n > 0 {
			want[ag.addr] = n
		}
	}
	batches, err := svc.PayoutRun(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, b := range batches {
		for _, it := range b.Items {
			got[it.Address] += it.Amount
		}
	}
	if len(want) != 2 || !maps.Equal(got, want) {
		t.Errorf("payout batches pay %v, want the two honest providers' earnings %v", got, want)
	}
	for addr, n := range want {
		if pending, _ := l.led.Balance(l.ctx, payout.MinerAccount(addr, "pending")); pending != n {
			t.Errorf("%s: %d pending after the payout run, want %d", addr, pending, n)
		}
	}
	if err := l.led.Check(l.ctx); err != nil {
		t.Fatal(err)
	}
}
