package compute_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
)

func (f *fixture) service(tenant string, budget int64) compute.OrderView {
	f.t.Helper()
	v, err := f.b.PlaceOrder(f.ctx, tenant, compute.OrderRequest{Kind: compute.KindService, Module: module, Args: []string{"serve"},
		Cores: 1, Memory: 64 << 20, MaxPrice: 10 * satPerMS, Budget: budget})
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// send queues a request without waiting for its answer.
func (f *fixture) send(tenant, order, body string) compute.RequestView {
	f.t.Helper()
	r, err := f.b.Request(f.ctx, tenant, order, []byte(body), 0)
	if err != nil {
		f.t.Fatal(err)
	}
	if r.Status != compute.RequestQueued {
		f.t.Fatalf("request %+v: want queued", r)
	}
	return r
}

// answer answers every request waiting for the lease with its body upper-cased.
func (f *fixture) answer(p testProvider, lease string) int {
	f.t.Helper()
	ws, err := f.b.ServiceRequests(f.ctx, p.acct, lease, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, w := range ws {
		if err := f.b.ServiceRespond(p.acct, lease, compute.ServiceResponse{Request: w.ID, Response: []byte(strings.ToUpper(string(w.Body)))}); err != nil {
			f.t.Fatal(err)
		}
	}
	return len(ws)
}

func (f *fixture) requestStatus(tenant, order, id string) compute.RequestView {
	f.t.Helper()
	r, err := f.b.RequestStatus(f.ctx, tenant, order, id, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// TestServiceSettlement: a service is leased, fetched, sent requests and answered
// through the book, metered per report like a job; a cancel fails what waits, stops
// the lease at its next report and refunds the rest, to the satoshi.
func TestServiceSettlement(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.service(tenant, 100_000)
	if o.Kind != compute.KindService || o.Status != compute.OrderRunning || o.Service.State != compute.ServiceStarting || o.Units != 0 {
		t.Fatalf("placed service: %+v %+v", o, o.Service)
	}
	// Queued before the provider has fetched the lease: delivered once it has.
	early := f.send(tenant, o.ID, "early")
	w := f.lease(p)
	if w.Kind != compute.KindService || len(w.Units) != 0 || string(w.Args[0]) != "serve" {
		t.Fatalf("lease work %+v", w)
	}
	if n := f.answer(p, w.ID); n != 1 {
		t.Fatalf("served %d requests, want 1", n)
	}
	if r := f.requestStatus(tenant, o.ID, early.ID); r.Status != compute.RequestDone || string(r.Response) != "EARLY" {
		t.Fatalf("early request: %+v", r)
	}
	for i := range 40 {
		f.send(tenant, o.ID, "req")
		if i%10 == 9 {
			f.answer(p, w.ID)
		}
	}
	f.clk.Add(time.Second)
	if r := f.report(p, w.ID, compute.UsageReport{Seq: 1, CPUNS: 300e6, WallNS: 1e9, RSS: 10 << 20}); r.Stop || r.Charged != 300 {
		t.Fatalf("first report: %+v, want 300 charged", r)
	}
	v := f.orderView(tenant, o.ID)
	if s := v.Service; s.State != compute.ServiceRunning || s.Served != 41 || s.Failed != 0 || s.Queued != 0 || v.Leases[0].Service == nil {
		t.Fatalf("service view %+v", s)
	}
	// Two waiting, one of them delivered, when the tenant cancels.
	a := f.send(tenant, o.ID, "a")
	f.b.ServiceRequests(f.ctx, p.acct, w.ID, 0)
	b := f.send(tenant, o.ID, "b")
	if _, err := f.b.Cancel(f.ctx, tenant, o.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		if r := f.requestStatus(tenant, o.ID, id); r.Status != compute.RequestFailed || !strings.Contains(r.Err, "service stopped: cancelled") {
			t.Errorf("request waiting at the cancel: %+v", r)
		}
	}
	if _, err := f.b.Request(f.ctx, tenant, o.ID, []byte("late"), 0); hashgrid.ErrorCode(err) != hashgrid.ECONFLICT {
		t.Errorf("request after the cancel: %v, want conflict", err)
	}
	// The lease runs until its next report, which is paid: the provider's poll
	// gets nothing more to answer.
	if work, err := f.b.ServiceRequests(f.ctx, p.acct, w.ID, 0); err != nil || len(work) != 0 {
		t.Errorf("the provider's poll after the cancel: %v, %v, want no requests", work, err)
	}
	if v := f.orderView(tenant, o.ID); v.Closed {
		t.Fatalf("cancelled service closed before its lease's last report: %+v", v)
	}
	f.clk.Add(time.Second)
	if r := f.report(p, w.ID, compute.UsageReport{Seq: 2, CPUNS: 900e6, WallNS: 2e9}); !r.Stop || r.Charged != 900 {
		t.Fatalf("report after the cancel: %+v, want stop, the interval up to it charged (900 in all)", r)
	}
	if work, err := f.b.ServiceRequests(f.ctx, p.acct, w.ID, 0); hashgrid.ErrorCode(err) != hashgrid.ECONFLICT {
		t.Errorf("the provider's poll after the last report: %v, %v, want conflict", work, err)
	}
	v = f.orderView(tenant, o.ID)
	if v.Status != compute.OrderCancelled || !v.Closed || v.Charged != 900 || v.Refunded != 99_100 || v.Service.Failed != 2 || v.Service.State != compute.ServiceStopped {
		t.Fatalf("cancelled service %+v %+v", v, v.Service)
	}
	if got := f.balance("market:buyer:" + tenant); got != 1_000_000-900 {
		t.Errorf("tenant balance %d, want %d", got, 1_000_000-900)
	}
	if got := f.balance("miner:" + p.addr + ":balance"); got != 882 {
		t.Errorf("provider payable %d, want 882 (900 less the 2%% fee)", got)
	}
	f.checkBooks(map[string]int64{tenant: 1_000_000})
}

// TestServiceBudgetStops: the report after which the escrow would not pay another
// interval stops the service; its waiting requests fail, new ones are refused, and
// the rest is refunded.
func TestServiceBudgetStops(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(10_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.service(tenant, 2_500)
	w := f.lease(p)
	f.clk.Add(time.Second)
	if r := f.report(p, w.ID, compute.UsageReport{Seq: 1, CPUNS: 1e9, WallNS: 1e9}); r.Stop || r.Charged != 1000 {
		t.Fatalf("first interval: %+v", r)
	}
	q := f.send(tenant, o.ID, "q")
	f.clk.Add(time.Second)
	if r := f.report(p, w.ID, compute.UsageReport{Seq: 2, CPUNS: 2e9, WallNS: 2e9}); !r.Stop || r.Charged != 2000 {
		t.Fatalf("second interval: %+v, want stop with 500 left", r)
	}
	if r := f.requestStatus(tenant, o.ID, q.ID); r.Status != compute.RequestFailed || !strings.Contains(r.Err, "budget") {
		t.Errorf("request waiting when the budget ran out: %+v", r)
	}
	_, err := f.b.Request(f.ctx, tenant, o.ID, []byte("x"), 0)
	if hashgrid.ErrorCode(err) != hashgrid.ECONFLICT || !strings.Contains(err.Error(), "budget") {
		t.Errorf("request after: %v", err)
	}
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderExhausted || !v.Closed || v.Charged != 2000 || v.Refunded != 500 {
		t.Errorf("order %+v", v)
	}
	f.checkBooks(map[string]int64{tenant: 10_000})
}

// TestServiceLost: a service whose provider stops reporting is lost after
// MissedReports intervals; what was reported is paid, the rest refunded, and the
// requests waiting fail.
func TestServiceLost(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.service(tenant, 50_000)
	w := f.lease(p)
	f.clk.Add(time.Second)
	f.report(p, w.ID, compute.UsageReport{Seq: 1, CPUNS: 700e6, WallNS: 1e9})
	q := f.send(tenant, o.ID, "q")
	f.clk.Add(4 * time.Second)
	f.b.Tick(f.ctx)
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderLost || !v.Closed || v.Charged != 700 || v.Refunded != 49_300 || v.Service.State != compute.ServiceStopped {
		t.Fatalf("lost service %+v %+v", v, v.Service)
	}
	if r := f.requestStatus(tenant, o.ID, q.ID); r.Status != compute.RequestFailed || !strings.Contains(r.Err, "lost") {
		t.Errorf("request waiting when lost: %+v", r)
	}
	f.checkBooks(map[string]int64{tenant: 100_000})
}

// TestServiceLimits: a request over MaxRequestBytes, a full queue, a response over
// MaxResponseBytes, a batch over MaxRequestBatch, and a request never answered.
func TestServiceLimits(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.service(tenant, 100_000)
	w := f.lease(p)
	if _, err := f.b.Request(f.ctx, tenant, o.ID, make([]byte, compute.MaxRequestBytes+1), 0); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Errorf("request over %d bytes: %v", compute.MaxRequestBytes, err)
	}
	var first compute.RequestView
	for i := range compute.MaxQueuedRequests {
		r := f.send(tenant, o.ID, "x")
		if i == 0 {
			first = r
		}
	}
	_, err := f.b.Request(f.ctx, tenant, o.ID, []byte("one too many"), 0)
	if hashgrid.ErrorCode(err) != hashgrid.ERATELIMITED {
		t.Fatalf("request past a full queue: %v, want rate_limited", err)
	}
	ws, err := f.b.ServiceRequests(f.ctx, p.acct, w.ID, 0)
	if err != nil || len(ws) != compute.MaxRequestBatch || ws[0].ID != first.ID {
		t.Fatalf("first batch: %d requests (%v), want %d, oldest first", len(ws), err, compute.MaxRequestBatch)
	}
	// Delivered but unanswered still count against the queue.
	if _, err := f.b.Request(f.ctx, tenant, o.ID, []byte("x"), 0); hashgrid.ErrorCode(err) != hashgrid.ERATELIMITED {
		t.Fatalf("request with %d delivered, not answered: %v", compute.MaxRequestBatch, err)
	}
	if err := f.b.ServiceRespond(p.acct, w.ID, compute.ServiceResponse{Request: ws[0].ID, Response: make([]byte, compute.MaxResponseBytes+1)}); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Errorf("response over %d bytes: %v", compute.MaxResponseBytes, err)
	}
	if err := f.b.ServiceRespond(p.acct, w.ID, compute.ServiceResponse{Request: ws[1].ID, Err: "crashed on it"}); err != nil {
		t.Fatal(err)
	}
	if r := f.requestStatus(tenant, o.ID, ws[1].ID); r.Status != compute.RequestFailed || !strings.Contains(r.Err, "crashed on it") {
		t.Errorf("request the service crashed on: %+v", r)
	}
	f.send(tenant, o.ID, "room again")
	// Unanswered past RequestTimeout: failed, and a late answer is refused.
	f.clk.Add(compute.RequestTimeout + time.Second)
	f.report(p, w.ID, compute.UsageReport{Seq: 1, CPUNS: 1e6, WallNS: 1e9})
	f.b.Tick(f.ctx)
	if r := f.requestStatus(tenant, o.ID, ws[0].ID); r.Status != compute.RequestFailed || !strings.Contains(r.Err, "not answered within") {
		t.Errorf("request never answered: %+v", r)
	}
	if err := f.b.ServiceRespond(p.acct, w.ID, compute.ServiceResponse{Request: ws[0].ID, Response: []byte("late")}); hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
		t.Errorf("late response: %v", err)
	}
	v := f.orderView(tenant, o.ID)
	if v.Service.Failed != compute.MaxQueuedRequests+1 || v.Service.Queued != 0 || v.Service.Served != 0 {
		t.Errorf("service view %+v", v.Service)
	}
}

// TestServiceValidationAndCrashes: a service takes no units and a job no requests;
// the agent's restarts show in the views, and a final report (the service crashed
// once too often) ends the lease and fails the order, refunding the rest.
func TestServiceValidationAndCrashes(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	for _, req := range []compute.OrderRequest{
		{Kind: compute.KindService, Module: module, Units: [][]byte{{1}}, Cores: 1, Memory: 64 << 20, Budget: 1000},
		{Kind: compute.KindService, Module: module, NoVerify: true, Cores: 1, Memory: 64 << 20, Budget: 1000},
		{Kind: "daemon", Module: module, Units: [][]byte{{1}}, Cores: 1, Memory: 64 << 20, Budget: 1000},
		{Module: module, Cores: 1, Memory: 64 << 20, Budget: 1000},
		{Kind: compute.KindService, Image: "127.0.0.1:5000/digits@sha256:" + strings.Repeat("ab", 32), Cores: 1, Memory: 64 << 20, Budget: 1000},
	} {
		if _, err := f.b.PlaceOrder(f.ctx, tenant, req); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
			t.Errorf("order kind %q with %d units: %v, want invalid", req.Kind, len(req.Units), err)
		}
	}
	job := f.order(tenant, 1, 10_000, true)
	if _, err := f.b.Request(f.ctx, tenant, job.ID, []byte("x"), 0); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Errorf("request to a job: %v", err)
	}
	jw := f.lease(p)
	if _, err := f.b.ServiceRequests(f.ctx, p.acct, jw.ID, 0); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Errorf("request poll of a job's lease: %v", err)
	}

	o := f.service(tenant, 100_000)
	w := f.lease(p)
	f.clk.Add(time.Second)
	f.report(p, w.ID, compute.UsageReport{Seq: 1, CPUNS: 100e6, WallNS: 1e9, Restarts: 2, Reason: "exit 2"})
	if v := f.orderView(tenant, o.ID); v.Service.Restarts != 2 || v.Service.State != compute.ServiceRunning {
		t.Fatalf("after two restarts: %+v", v.Service)
	}
	f.clk.Add(time.Second)
	r := f.report(p, w.ID, compute.UsageReport{Seq: 2, CPUNS: 150e6, WallNS: 2e9, Restarts: 3, Final: true, Reason: "service crashed 4 times"})
	if r.Charged != 150 {
		t.Fatalf("final report: %+v", r)
	}
	v := f.orderView(tenant, o.ID)
	if v.Status != compute.OrderFailed || !strings.Contains(v.Reason, "crashed 4 times") || v.Leases[0].Status != compute.LeaseEnded || !v.Closed || v.Refunded != 100_000-150 {
		t.Fatalf("crashed service: %+v", v)
	}
	log, _ := f.b.Log(tenant, o.ID)
	joined := strings.Join(log, "\n")
	for _, want := range []string{"service order placed", "service lease " + w.ID + " fetched by provider", "restarted by provider", "service stopped: ended: service crashed 4 times"} {
		if !strings.Contains(joined, want) {
			t.Errorf("order log lacks %q:\n%s", want, joined)
		}
	}
}

// TestServiceKeepsAnswersBounded: answered requests are kept for GET up to
// MaxKeptBytes of responses; older ones are forgotten.
func TestServiceKeepsAnswersBounded(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.service(tenant, 100_000)
	w := f.lease(p)
	n := compute.MaxKeptBytes/compute.MaxResponseBytes + 4
	var ids []string
	for range n {
		r := f.send(tenant, o.ID, "big")
		ws, err := f.b.ServiceRequests(f.ctx, p.acct, w.ID, 0)
		if err != nil || len(ws) != 1 {
			t.Fatalf("poll: %d, %v", len(ws), err)
		}
		if err := f.b.ServiceRespond(p.acct, w.ID, compute.ServiceResponse{Request: ws[0].ID, Response: make([]byte, compute.MaxResponseBytes)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	kept := compute.MaxKeptBytes / compute.MaxResponseBytes
	for i, id := range ids {
		_, err := f.b.RequestStatus(f.ctx, tenant, o.ID, id, 0)
		if gone := i < n-kept; gone != (hashgrid.ErrorCode(err) == hashgrid.ENOTFOUND) {
			t.Errorf("request %d of %d: %v (want forgotten: %v)", i, n, err, gone)
		}
	}
	if v := f.orderView(tenant, o.ID); v.Service.Served != int64(n) {
		t.Errorf("served %d, want %d", v.Service.Served, n)
	}
}
