package compute_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hashgrid/hashgrid/compute"
)

// TestPausedProviderTakesNoNewLeases: a provider that registers paused is offered to
// nobody and assigned nothing, the lease it already runs goes on to its end, and once
// it resumes it takes the order that waited.
func TestPausedProviderTakesNoNewLeases(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(1_000_000)
	p := f.provider("rig", 1, satPerMS)
	first := f.order(tenant, 1, 100_000, true)
	if first.Status != compute.OrderRunning || first.Leases[0].Provider != p.id {
		t.Fatalf("first order: %+v, want running on the provider", first)
	}
	w := f.lease(p)
	pause := compute.ProviderRequest{Name: "rig", PayoutAddress: p.addr, Resources: compute.Resources{Cores: 2, Memory: 1 << 30}, Price: satPerMS, Paused: true}
	v, err := f.b.Register(p.acct, pause)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Paused || v.ID != p.id {
		t.Fatalf("view after pausing: %+v, want the same provider, paused", v)
	}
	if offers := f.b.Offers(); len(offers) != 0 {
		t.Errorf("offers while paused: %+v, want none", offers)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.b.Collector())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP hashgrid_compute_providers Providers registered, by state: online (reported within MissedReports intervals), paused (online, taking no new leases), offline, or marked (caught returning wrong results).
# TYPE hashgrid_compute_providers gauge
hashgrid_compute_providers{state="marked"} 0
hashgrid_compute_providers{state="offline"} 0
hashgrid_compute_providers{state="online"} 0
hashgrid_compute_providers{state="paused"} 1
# HELP hashgrid_compute_cores Cores of online, unmarked, unpaused providers: offered in all, and held by running or pending leases.
# TYPE hashgrid_compute_cores gauge
hashgrid_compute_cores{use="leased"} 0
hashgrid_compute_cores{use="offered"} 0
`), "hashgrid_compute_providers", "hashgrid_compute_cores"); err != nil {
		t.Errorf("metrics while paused: %v", err)
	}
	second := f.order(tenant, 1, 100_000, true)
	if second.Status != compute.OrderOpen {
		t.Errorf("order placed while the only provider is paused: %s, want open", second.Status)
	}
	// The running lease is not cut off: it reports and finishes as usual.
	f.result(p, w.ID, 0, "out")
	if r := f.report(p, w.ID, compute.UsageReport{Seq: 1, CPUNS: 1e6, WallNS: 1e6, Final: true}); r.Stop {
		t.Errorf("final report of a paused provider's lease: %+v, want no stop", r)
	}
	if got := f.orderView(tenant, first.ID).Status; got != compute.OrderDone {
		t.Errorf("lease that ran while paused: order %s, want done", got)
	}
	if got := f.orderView(tenant, second.ID).Status; got != compute.OrderOpen {
		t.Errorf("after the paused provider's lease ended: second order %s, want still open", got)
	}
	pause.Paused = false
	if v, err = f.b.Register(p.acct, pause); err != nil || v.Paused {
		t.Fatalf("resume: %+v, %v", v, err)
	}
	if got := f.orderView(tenant, second.ID); got.Status != compute.OrderRunning || got.Leases[0].Provider != p.id {
		t.Errorf("after resuming: %+v, want the waiting order running on the provider", got)
	}
	if offers := f.b.Offers(); len(offers) != 1 || offers[0].Provider != p.id {
		t.Errorf("offers after resuming: %+v, want the provider's", offers)
	}
}
