package payout

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hashgrid/hashgrid"
)

// TestLayoutOutputsMatchService: a front-end laying out PPLNS coinbases from the
// published layout (through JSON, as it travels) builds exactly the service's outputs.
func TestLayoutOutputsMatchService(t *testing.T) {
	ctx := context.Background()
	const reward = 50_0000_0000
	h := newHarness(t, Config{Scheme: PPLNS, Window: hashgrid.Diff(1) << 63,
		Split: SplitParams{FeeBps: 100, DirectMin: 30_0000_0000, MaxDirect: 10}})
	remote := LayoutOutputs(h.svc.cfg, func() (Layout, bool) { return Layout{}, false })
	before, _, err := remote(tmpl(1, reward), reward, "")
	if err != nil || len(before) != 1 || before[0].Value != reward {
		t.Fatalf("outputs before any layout: %+v %v, want the pool's address only", before, err)
	}
	d := hashgrid.Diff(1 << 25)
	for i := 0; i < 300; i++ {
		h.share(t, testMiners[0], d, 1)
		if i%3 == 2 {
			h.share(t, testMiners[1], d, 1)
		}
	}
	h.svc.Outputs(tmpl(1, reward), reward, "")
	size, _ := WindowSize(h.svc.cfg.Window, regtestBits)
	if err := h.svc.loadWindow(ctx, h.seq, size.Plus(size)); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.cut(ctx, true); err != nil {
		t.Fatal(err)
	}
	l, ok := h.svc.Layout()
	if !ok {
		t.Fatal("no layout after a cut")
	}
	raw, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var got Layout
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	remote = LayoutOutputs(h.svc.cfg, func() (Layout, bool) { return got, true })
	for _, value := range []int64{reward, reward + 12_345, 1000} {
		want, _, err := h.svc.Outputs(tmpl(1, value), value, "")
		if err != nil {
			t.Fatal(err)
		}
		outs, key, err := remote(tmpl(1, value), value, "")
		if err != nil || key != "" {
			t.Fatalf("remote outputs: %v %q", err, key)
		}
		if !reflect.DeepEqual(outs, want) {
			t.Fatalf("value %d: front-end outputs %+v, service %+v", value, outs, want)
		}
	}
}

// TestSoloOutputsMatchService: a front-end's SOLO coinbases are the service's.
func TestSoloOutputsMatchService(t *testing.T) {
	h := newHarness(t, Config{Scheme: SOLO, Split: SplitParams{FeeBps: 150}})
	remote := SoloOutputs(h.svc.cfg)
	for _, finder := range []string{"", testMiners[0], testMiners[1]} {
		want, wkey, err := h.svc.Outputs(tmpl(1, 50_0000_0000), 50_0000_0000, finder)
		if err != nil {
			t.Fatal(err)
		}
		outs, key, err := remote(tmpl(1, 50_0000_0000), 50_0000_0000, finder)
		if err != nil || key != wkey || !reflect.DeepEqual(outs, want) {
			t.Fatalf("finder %q: front-end %+v %q %v, service %+v %q", finder, outs, key, err, want, wkey)
		}
	}
	if _, _, err := remote(tmpl(1, 1), 1, "not-an-address"); err == nil {
		t.Fatal("a bad finder address was laid out")
	}
}
