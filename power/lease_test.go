package power

import (
	"strings"
	"testing"
	"time"
)

// leaseGroup is ten machines of 100 TH/s at 3,250 W that can also lease 8 cores each
// at 300 W.
func leaseGroup(t *testing.T) (*Model, *ComputeConfig) {
	t.Helper()
	cc := &ComputeConfig{Market: "http://127.0.0.1:1", Controls: []string{"127.0.0.1:2"}, Cores: 8, Watts: 300, FeeBps: 200}
	m, err := NewModel(GroupConfig{Name: "rigs", Count: 10, StaggerBatch: 10, SleepWatts: 12, MinOn: Duration{30 * time.Minute},
		MinOff: Duration{15 * time.Minute}, Modes: []ModeConfig{{Name: "full", THs: 100, Watts: 3250}}, Compute: cc})
	if err != nil {
		t.Fatal(err)
	}
	return m, cc
}

// TestQuoteLease checks the revenue formula with exact figures: 400 sat charged for
// ten held core-hours is 40 sat per core-hour, 39.2 after a 2% fee; half the market's
// cores are leased; 80 cores then earn 1,568 sat an hour, which at $100,000 per BTC is
// $0.392 per 15-minute interval. Ten machines at 300 W draw 750 Wh in it.
func TestQuoteLease(t *testing.T) {
	_, cc := leaseGroup(t)
	q := QuoteLease(cc, 10, LeaseMarket{ChargedSat: 400, HeldCoreMS: 36_000_000, FloorSat: 1000, BusyCores: 32, OfferedCores: 64}, 100_000)
	if q.RatePerCoreHour != 39.2 || q.Occupancy != 0.5 || q.SatPerHour != 1568 || q.Revenue != 392_000 || q.EnergyWh != 750 {
		t.Errorf("quote: %+v; want 39.2 sat/core-hour, occupancy 0.5, 1568 sat/h, 392000 µ$, 750 Wh", q)
	}
	// No lease in the window: the providers' floor is the rate.
	q = QuoteLease(cc, 10, LeaseMarket{FloorSat: 50, BusyCores: 10, OfferedCores: 10}, 100_000)
	if q.RatePerCoreHour != 49 || q.SatPerHour != 3920 || q.Revenue != 980_000 {
		t.Errorf("quote on the floor: %+v; want 49 sat/core-hour, 3920 sat/h, 980000 µ$", q)
	}
	// A market with no offers shows no demand: leasing earns nothing.
	if q = QuoteLease(cc, 10, LeaseMarket{ChargedSat: 400, HeldCoreMS: 36_000_000}, 100_000); q.Revenue != 0 || q.Occupancy != 0 {
		t.Errorf("quote with no offers: %+v; want nothing", q)
	}
}

// TestChooseLease checks the decision with exact figures. Mining earns 1,000 TH/s ×
// $0.05 per TH/s·day × 900 s / 86,400 s × 0.98 = 510,417 µ$ an interval and draws
// 8,125 Wh; leasing earns 392,000 µ$ and draws 750 Wh; asleep, the group draws 30 Wh.
// At $10/MWh mining nets 429,167 against leasing's 384,500; at $40/MWh leasing nets
// 362,000 against mining's 185,417; at $600/MWh both lose more than sleeping (-4,364,583 and -58,000 against -18,000).
func TestChooseLease(t *testing.T) {
	m, cc := leaseGroup(t)
	q := QuoteLease(cc, 10, LeaseMarket{ChargedSat: 400, HeldCoreMS: 36_000_000, BusyCores: 32, OfferedCores: 64}, 100_000)
	site := &Site{PoolFee: 0.02, ShedPrice: 1000_00, AlertPrice: 200_00, FourCPRate: 1}
	on := State{Mode: 1, Dwell: m.Dwell}
	in := func(p Price, s State) *Input {
		return &Input{Site: site, Model: m, State: s, History: []Price{p}, Hashprice: 0.05}
	}
	for _, c := range []struct {
		p                Price
		mine, lease, off Micro
	}{
		{10_00, 429_167, 384_500, -300},
		{40_00, 185_417, 362_000, -1200},
		{600_00, -4_364_583, -58_000, -18_000},
	} {
		x := in(c.p, on)
		if got := x.SteadyProfit(1, c.p); got != c.mine {
			t.Errorf("mining at %s: %d µ$, want %d", c.p, got, c.mine)
		}
		if got := x.LeaseProfit(q, c.p); got != c.lease {
			t.Errorf("leasing at %s: %d µ$, want %d", c.p, got, c.lease)
		}
		if got := x.SteadyProfit(0, c.p); got != c.off {
			t.Errorf("curtailed at %s: %d µ$, want %d", c.p, got, c.off)
		}
	}
	if ChooseLease(in(10_00, on), 1, false, q) {
		t.Error("$10/MWh: leased, want mining")
	}
	if !ChooseLease(in(40_00, on), 1, false, q) {
		t.Error("$40/MWh: mining, want leasing")
	}
	if ChooseLease(in(600_00, on), 0, true, q) {
		t.Error("$600/MWh: leased at a loss, want curtailed")
	}
	// The crossing: mining and leasing net the same near $16.06/MWh.
	if ChooseLease(in(16_05, on), 1, false, q) || !ChooseLease(in(16_06, on), 1, false, q) {
		t.Error("crossing: want mining at $16.05/MWh and leasing at $16.06/MWh")
	}
	// Minimum on time: miners switched on one interval ago stay on.
	if ChooseLease(in(40_00, State{Mode: 1, Dwell: 1}), 1, false, q) {
		t.Error("leased before the miners' minimum on time")
	}
	// Safe rules.
	x := in(40_00, on)
	x.Cond.ForcedOff = true
	if ChooseLease(x, 0, true, q) {
		t.Error("leased on a forced-off interval (stale feed or demand response)")
	}
	x = in(200_00, on)
	x.Watch = true
	if ChooseLease(x, 0, true, q) {
		t.Error("leased in the 4CP watch window at the alert price")
	}
	x = &Input{Site: site, Model: m, State: State{Mode: 0, Dwell: 1}, Hashprice: 0.05}
	if !ChooseLease(x, 0, true, q) || ChooseLease(x, 0, false, q) {
		t.Error("no price yet: want the group left as it is")
	}
}

func TestComputeConfig(t *testing.T) {
	base := `
name = "s"
zone = "LZ_WEST"
capacity_mw = 1.0
[[group]]
name = "rigs"
count = 2
  [[group.mode]]
  name = "full"
  ths = 100.0
  watts = 3250.0
  [group.compute]
  market = "http://127.0.0.1:8081"
  cores = 8
  watts = 300.0
`
	c, err := ReadConfig(strings.NewReader(base + `  controls = ["127.0.0.1:8094", "127.0.0.1:8095"]` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Groups[0].Compute
	if cc == nil || cc.Cores != 8 || cc.Window.Duration != 24*time.Hour || cc.FeeBps != 200 || cc.Drain.Duration != 5*time.Minute {
		t.Fatalf("compute table with defaults: %+v", cc)
	}
	for _, c := range []struct{ extra, want string }{
		{`  controls = ["127.0.0.1:8094", "127.0.0.1:8095", "127.0.0.1:8096"]`, "group[0].compute.controls: 3 given"},
		{`  controls = ["nohost"]`, "group[0].compute.controls[0]: want host:port"},
		{"  controls = [\"127.0.0.1:8094\"]\n  drain = \"20m\"", "group[0].compute.drain"},
		{"  controls = [\"127.0.0.1:8094\"]\n  fee_bps = 10000", "group[0].compute.fee_bps"},
	} {
		_, err := ReadConfig(strings.NewReader(base + c.extra + "\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error naming %q", c.extra, err, c.want)
		}
	}
	ftp := strings.Replace(base, "http://127.0.0.1:8081", "ftp://127.0.0.1:8081", 1) + `  controls = ["127.0.0.1:8094"]` + "\n"
	if _, err := ReadConfig(strings.NewReader(ftp)); err == nil || !strings.Contains(err.Error(), "group[0].compute.market") {
		t.Errorf("ftp market: got %v, want an error naming group[0].compute.market", err)
	}
}
