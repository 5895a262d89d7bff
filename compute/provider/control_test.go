package provider_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	modelwasm "github.com/hashgrid/hashgrid/compute/model/wasm"
	"github.com/hashgrid/hashgrid/compute/provider"
)

// TestControlEndpoint drives an agent's control endpoint over loopback: pause and
// resume reach the market before the reply, a release is refused while the offer is
// open, and a route that does not exist answers in the one error shape.
func TestControlEndpoint(t *testing.T) {
	l := newLoop(t)
	_, key := l.account(0)
	ag := l.startAgent("ctl", key, 20, satPerMS, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := ag.a.ServeControl(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := provider.NewControlClient(addr.String(), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Provider != ag.a.ID() || st.Paused || st.Market == nil || st.Market.Paused || len(st.Running) != 0 {
		t.Fatalf("status of an offering agent: %+v", st)
	}
	if _, err := c.Release(l.ctx); err == nil || !strings.Contains(err.Error(), "pause first") {
		t.Errorf("release while offering: %v, want refused", err)
	}
	st, err = c.Pause(l.ctx)
	if err != nil || !st.Paused || st.Market == nil || !st.Market.Paused {
		t.Fatalf("pause: %+v, %v; want paused at the agent and at the market", st, err)
	}
	offers, err := (&compute.Client{Base: l.base}).Offers(l.ctx)
	if err != nil || len(offers) != 0 {
		t.Errorf("offers while paused: %+v, %v; want none", offers, err)
	}
	if st, err = c.Release(l.ctx); err != nil || len(st.Running) != 0 {
		t.Errorf("release with nothing running: %+v, %v", st, err)
	}
	st, err = c.Resume(l.ctx)
	if err != nil || st.Paused || st.Market.Paused {
		t.Fatalf("resume: %+v, %v", st, err)
	}
	if offers, err = (&compute.Client{Base: l.base}).Offers(l.ctx); err != nil || len(offers) != 1 || offers[0].Provider != ag.a.ID() {
		t.Errorf("offers after resuming: %+v, %v; want the agent's", offers, err)
	}
	resp, err := http.Get("http://" + addr.String() + "/control/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown route: %s, want 404", resp.Status)
	}
	if _, err := provider.NewControlClient("no-port", time.Second); err == nil {
		t.Error("control address without a port accepted")
	}
	for in, want := range map[string]string{"8094": "127.0.0.1:8094", ":8094": "127.0.0.1:8094", "mgmt.example:8094": "mgmt.example:8094", "[::1]:8094": "[::1]:8094",
		"": "", "host": "", "host:": ""} {
		got, err := provider.ControlListenAddr(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("ControlListenAddr(%q): %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestReleaseHandsBackAService: a service never finishes by itself, so a controller
// draining the machine hands it back: paused, then released, the agent stops the
// service and its final report ends the lease at the market with the reason, the
// tenant charged for what was metered and refunded the rest.
func TestReleaseHandsBackAService(t *testing.T) {
	l := newLoop(t)
	_, tkey := l.account(50_000_000)
	_, key := l.account(0)
	ag := l.startAgentPriced("svc", key, 30, satPerMS, memPrice, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := ag.a.ServeControl(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := provider.NewControlClient(addr.String(), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := &compute.Client{Base: l.base, Key: tkey, HTTP: &http.Client{Timeout: 30 * time.Second}}
	o, err := tc.PlaceOrder(l.ctx, compute.OrderRequest{Kind: compute.KindService, Module: modelwasm.Digits, Args: []string{"serve"},
		Cores: 1, Memory: 256 << 20, MaxPrice: satPerMS, MaxMemPrice: memPrice, Budget: 10_000_000, Provider: ag.a.ID()})
	if err != nil {
		t.Fatal(err)
	}
	units, want := digitUnits(t, 0, 1, 3)
	if v, err := l.ask(tc, o.ID, units[0]); err != nil || !bytes.Equal(v.Response, want[0]) {
		t.Fatalf("request to the service: %+v, %v", v, err)
	}
	if st, err := c.Pause(l.ctx); err != nil || !st.Paused || len(st.Running) != 1 {
		t.Fatalf("pause with the service running: %+v, %v; want paused, the service still running", st, err)
	}
	st, err := c.Release(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v compute.OrderView
	waitFor(t, 30*time.Second, "the service's lease ended at the market", func() bool {
		if v, err = tc.Order(l.ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		return v.Closed
	})
	ls := v.Leases[0]
	if ls.Status != compute.LeaseEnded || !strings.Contains(ls.Reason, "handed back by its provider") || v.Charged <= 0 || v.Charged+v.Refunded != v.Budget {
		t.Fatalf("service after its hand-back: %+v; want its lease ended, handed back, the metered work charged and the rest refunded", v)
	}
	waitFor(t, 10*time.Second, "the agent with nothing running", func() bool {
		st, err = c.Status(l.ctx)
		return err == nil && len(st.Running) == 0
	})
	t.Logf("service handed back: %d sat charged, %d refunded", v.Charged, v.Refunded)
}
