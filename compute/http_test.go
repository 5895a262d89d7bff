package compute_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/market"
)

// serve mounts the book on the market's own handler, as `hashgrid market` does.
func (f *fixture) serve() string {
	f.t.Helper()
	srv := httptest.NewServer(market.NewHandler(f.m, market.HTTPConfig{Compute: compute.NewHandler(f.b)}))
	f.t.Cleanup(srv.Close)
	return srv.URL
}

func TestHTTPLeaseThroughTheMarket(t *testing.T) {
	f := newFixture(t, compute.Config{})
	base := f.serve()
	tenantID, tenantKey := f.account(100_000)
	_, provKey := f.account(0)
	tenant := &compute.Client{Base: base, Key: tenantKey}
	prov := &compute.Client{Base: base, Key: provKey}
	ctx := context.Background()

	pv, err := prov.Register(ctx, compute.ProviderRequest{Name: "box", PayoutAddress: payAddr(t, 7), Resources: compute.Resources{Cores: 1, Memory: 1 << 30}, Price: satPerMS})
	if err != nil {
		t.Fatal(err)
	}
	if pv.IntervalMS != 1000 {
		t.Errorf("interval told to the provider: %d ms, want 1000", pv.IntervalMS)
	}
	offers, err := (&compute.Client{Base: base}).Offers(ctx)
	if err != nil || len(offers) != 1 || offers[0].Provider != pv.ID {
		t.Fatalf("public offers: %+v, %v", offers, err)
	}
	// A provider's poll waits for a lease and returns when one is assigned.
	polled := make(chan []compute.LeaseWork, 1)
	go func() {
		w, err := prov.Work(ctx, pv.ID, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		polled <- w
	}()
	o, err := tenant.PlaceOrder(ctx, compute.OrderRequest{Module: module, Units: [][]byte{[]byte("in")}, Cores: 1, Memory: 1 << 20,
		MaxPrice: satPerMS, Budget: 50_000, NoVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	var work []compute.LeaseWork
	select {
	case work = <-polled:
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll did not return the new lease")
	}
	if len(work) != 1 || string(work[0].Units[0]) != "in" || string(work[0].Module) != string(module) {
		t.Fatalf("work: %+v", work)
	}
	f.clk.Add(time.Second)
	if _, err := prov.Report(ctx, work[0].ID, compute.UsageReport{Seq: 1, CPUNS: 250e6, WallNS: 1e9}); err != nil {
		t.Fatal(err)
	}
	if err := prov.Result(ctx, work[0].ID, compute.UnitResult{Unit: 0, Stdout: []byte("out"), Stderr: []byte("log line")}); err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Report(ctx, work[0].ID, compute.UsageReport{Seq: 2, CPUNS: 250e6, WallNS: 1e9, Final: true}); err != nil {
		t.Fatal(err)
	}
	v, err := tenant.Order(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != compute.OrderDone || v.Charged != 250 || !v.Closed {
		t.Errorf("order %+v: want done, 250 charged, closed", v)
	}
	outs, err := tenant.Outputs(ctx, o.ID)
	if err != nil || len(outs) != 1 || string(outs[0].Stdout) != "out" || string(outs[0].Stderr) != "log line" {
		t.Errorf("outputs %+v, %v", outs, err)
	}
	if lines, err := tenant.Log(ctx, o.ID); err != nil || len(lines) < 3 {
		t.Errorf("log %q, %v: want the order's events", lines, err)
	}
	if got := f.balance("market:buyer:" + tenantID); got != 100_000-250 {
		t.Errorf("tenant's market balance: %d, want %d", got, 100_000-250)
	}
	pv, err = prov.Provider(ctx, pv.ID)
	if err != nil || pv.Earned != 245 || pv.Payable != 245 {
		t.Errorf("provider view %+v, %v: want 245 earned and payable", pv, err)
	}

	// Another account sees neither the order nor the provider, and acts on neither.
	_, otherKey := f.account(0)
	other := &compute.Client{Base: base, Key: otherKey}
	for name, call := range map[string]func() error{
		"order":    func() error { _, err := other.Order(ctx, o.ID); return err },
		"outputs":  func() error { _, err := other.Outputs(ctx, o.ID); return err },
		"cancel":   func() error { _, err := other.Cancel(ctx, o.ID); return err },
		"provider": func() error { _, err := other.Provider(ctx, pv.ID); return err },
		"work":     func() error { _, err := other.Work(ctx, pv.ID, 0); return err },
		"report":   func() error { _, err := other.Report(ctx, work[0].ID, compute.UsageReport{Seq: 9}); return err },
	} {
		if err := call(); hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
			t.Errorf("%s by another account: %v, want not found", name, err)
		}
	}
	// No key, or a wrong one: unauthorized.
	for _, key := range []string{"", "hgk_a1_00"} {
		_, err := (&compute.Client{Base: base, Key: key}).PlaceOrder(ctx, compute.OrderRequest{})
		var he *hashgrid.Error
		if !errors.As(err, &he) || he.Code != hashgrid.EUNAUTHORIZED {
			t.Errorf("order with key %q: %v, want unauthorized", key, err)
		}
	}
	// The market's own routes still answer beside the compute ones.
	resp, err := http.Get(base + "/api/v1/orderbook")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("market orderbook: %s", resp.Status)
	}
}
