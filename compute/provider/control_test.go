package provider_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/compute"
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
