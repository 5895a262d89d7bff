package compute_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hashgrid/hashgrid/compute"
)

// TestCollector follows a lease through the book's metrics: the provider online with
// its cores offered, the lease holding one, the escrow, the charge, and the
// provider offline once it stops reporting.
func TestCollector(t *testing.T) {
	f := newFixture(t, compute.Config{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.b.Collector())
	expect := func(what, text string, names ...string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(text), names...); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	expect("a provider registered", `
# HELP hashgrid_compute_cores Cores of online, unmarked, unpaused providers: offered in all, and held by running or pending leases.
# TYPE hashgrid_compute_cores gauge
hashgrid_compute_cores{use="leased"} 0
hashgrid_compute_cores{use="offered"} 2
`, "hashgrid_compute_cores")
	o := f.order(tenant, 2, 100_000, true)
	lease := f.lease(p).ID
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 500e6, WallNS: 1e9})
	expect("a lease running", `
# HELP hashgrid_compute_cores Cores of online, unmarked, unpaused providers: offered in all, and held by running or pending leases.
# TYPE hashgrid_compute_cores gauge
hashgrid_compute_cores{use="leased"} 1
hashgrid_compute_cores{use="offered"} 2
# HELP hashgrid_compute_escrow_sat Tenants' escrow not yet charged or refunded, sat, over orders not closed.
# TYPE hashgrid_compute_escrow_sat gauge
hashgrid_compute_escrow_sat 99500
# HELP hashgrid_compute_charged_sat What the book's orders were charged for metered work, sat.
# TYPE hashgrid_compute_charged_sat gauge
hashgrid_compute_charged_sat 500
# HELP hashgrid_compute_leases Leases the book holds (closed orders' for Config.Retention), by kind and status.
# TYPE hashgrid_compute_leases gauge
hashgrid_compute_leases{kind="job",status="running"} 1
`, "hashgrid_compute_cores", "hashgrid_compute_escrow_sat", "hashgrid_compute_charged_sat", "hashgrid_compute_leases")
	f.result(p, lease, 0, "zero")
	f.result(p, lease, 1, "one")
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 800e6, WallNS: 2e9, Final: true})
	if v := f.orderView(tenant, o.ID); !v.Closed {
		t.Fatalf("order %+v not closed", v)
	}
	f.clk.Add(time.Minute) // past MissedReports intervals: offline
	expect("the order closed, the provider gone", `
# HELP hashgrid_compute_escrow_sat Tenants' escrow not yet charged or refunded, sat, over orders not closed.
# TYPE hashgrid_compute_escrow_sat gauge
hashgrid_compute_escrow_sat 0
# HELP hashgrid_compute_charged_sat What the book's orders were charged for metered work, sat.
# TYPE hashgrid_compute_charged_sat gauge
hashgrid_compute_charged_sat 800
# HELP hashgrid_compute_orders Orders the book holds (closed ones for Config.Retention), by status.
# TYPE hashgrid_compute_orders gauge
hashgrid_compute_orders{status="done"} 1
# HELP hashgrid_compute_providers Providers registered, by state: online (reported within MissedReports intervals), paused (online, taking no new leases), offline, or marked (caught returning wrong results).
# TYPE hashgrid_compute_providers gauge
hashgrid_compute_providers{state="marked"} 0
hashgrid_compute_providers{state="offline"} 1
hashgrid_compute_providers{state="online"} 0
hashgrid_compute_providers{state="paused"} 0
`, "hashgrid_compute_escrow_sat", "hashgrid_compute_charged_sat", "hashgrid_compute_orders", "hashgrid_compute_providers")
}

// TestLiveLeases lists a lease while it is pending and running, with its provider's
// name and what it metered, and drops it when it ends.
func TestLiveLeases(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	if l := f.b.LiveLeases(); len(l) != 0 {
		t.Fatalf("live leases before any order: %+v", l)
	}
	f.order(tenant, 1, 100_000, true)
	live := f.b.LiveLeases()
	if len(live) != 1 || live[0].Provider != "p1" || live[0].Status != compute.LeasePending || live[0].Cores != 1 || live[0].Price != satPerMS {
		t.Fatalf("live leases after placing: %+v, want one pending lease of p1, 1 core at its price", live)
	}
	lease := f.lease(p).ID
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 1, CPUNS: 300e6, WallNS: 1e9})
	if live = f.b.LiveLeases(); len(live) != 1 || live[0].ID != lease || live[0].Status != compute.LeaseRunning || live[0].CPUMS != 300 || live[0].Charged != 300 {
		t.Fatalf("live leases while running: %+v, want %s running with 300 ms metered and 300 sat charged", live, lease)
	}
	f.result(p, lease, 0, "zero")
	f.clk.Add(time.Second)
	f.report(p, lease, compute.UsageReport{Seq: 2, CPUNS: 400e6, WallNS: 2e9, Final: true})
	if live = f.b.LiveLeases(); len(live) != 0 {
		t.Fatalf("live leases after the lease ended: %+v", live)
	}
}

// TestServiceRequestMetrics counts a service's requests by result as they are queued,
// answered and failed.
func TestServiceRequestMetrics(t *testing.T) {
	f := newFixture(t, compute.Config{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.b.Collector())
	expect := func(what string, served, failed, waiting int) {
		t.Helper()
		text := fmt.Sprintf(`
# HELP hashgrid_compute_service_requests Requests to the services the book holds, by result: served, failed, or waiting (queued or at the provider).
# TYPE hashgrid_compute_service_requests gauge
hashgrid_compute_service_requests{result="failed"} %d
hashgrid_compute_service_requests{result="served"} %d
hashgrid_compute_service_requests{result="waiting"} %d
`, failed, served, waiting)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(text), "hashgrid_compute_service_requests"); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	tenant, _ := f.account(1_000_000)
	p := f.provider("p1", 1, satPerMS)
	o := f.service(tenant, 100_000)
	w := f.lease(p)
	f.send(tenant, o.ID, "a")
	f.send(tenant, o.ID, "b")
	expect("two queued", 0, 0, 2)
	work, err := f.b.ServiceRequests(f.ctx, p.acct, w.ID, 0)
	if err != nil || len(work) != 2 {
		t.Fatalf("the provider's poll: %v, %v", work, err)
	}
	expect("two at the provider", 0, 0, 2)
	if err := f.b.ServiceRespond(p.acct, w.ID, compute.ServiceResponse{Request: work[0].ID, Response: []byte("A")}); err != nil {
		t.Fatal(err)
	}
	if err := f.b.ServiceRespond(p.acct, w.ID, compute.ServiceResponse{Request: work[1].ID, Err: "the service crashed on it"}); err != nil {
		t.Fatal(err)
	}
	expect("one answered, one failed", 1, 1, 0)
}
