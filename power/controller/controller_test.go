package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/controller"
	"github.com/hashgrid/hashgrid/power/ercot"
	"github.com/hashgrid/hashgrid/power/minersim"
)

const siteTOML = `
name = "e2e"
zone = "LZ_WEST"
capacity_mw = 1.0
pool_fee = 0.02
shed_price = 1000.0
shed_within = "2s"
stale_after = "30m"
[prices]
speed = 3600.0
poll = "20ms"
[bitcoin]
difficulty = 10.0e12
btc_usd = 35000.0
fees_btc_per_block = 0.3
[[group]]
name = "s19"
count = 6
min_on = "15m"
min_off = "30m"
stagger_batch = 2
stagger_every = "50ms"
sleep_watts = 12
protocol = "luxos"
  [[group.mode]]
  name = "full"
  ths = 100.0
  watts = 3450.0
  profile = "default"
  [[group.mode]]
  name = "eco"
  ths = 80.0
  watts = 2240.0
  profile = "eco"
[control]
timeout = "1s"
retries = 2
backoff = "50ms"
`

// TestShedOnReplayedSpike replays the real 13 August 2019 LZ_WEST spike ($2,004/MWh at
// 13:45 CDT, on its way to $9,039) through the controller against an emulated fleet in
// which one miner ignores commands. Every other miner must report curtailed within the
// stated shed time, and the ignoring one must be reported.
func TestShedOnReplayedSpike(t *testing.T) {
	ivs, err := ercot.ReadFile("../backtest/testdata/ercot-2019.csv.gz", power.Zone{Name: "LZ_WEST"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := power.ReadConfig(strings.NewReader(siteTOML))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := minersim.Start(minersim.Config{Count: 6, SleepWatts: 12, Profiles: []minersim.Profile{
		{Name: "default", THs: 100, Watts: 3450}, {Name: "eco", THs: 80, Watts: 2240}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	const ignorer = 4
	fleet.SetIgnore(ignorer, true)
	cfg.Groups[0].Endpoints = fleet.Addrs()

	from := time.Date(2019, 8, 13, 18, 0, 0, 0, time.UTC) // 13:00 CDT
	replay, err := ercot.NewReplay(ivs, cfg.Prices.Speed, from, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var energy, report bytes.Buffer
	ctl, err := controller.New(controller.Options{Config: cfg, Feed: replay, Energy: &energy, Report: &report})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var shed *controller.Step
	var shedWall time.Duration
	for shed == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no shed within 30 s of replay; report:\n%s", report.String())
		}
		began := time.Now()
		st, err := ctl.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st != nil && st.Shed {
			shed = st
			// Measured independently of the controller: the fleet's own reports.
			for _, s := range fleet.States() {
				if !s.Ignore && (!s.Asleep || s.GHs != 0) {
					t.Errorf("miner %s: asleep %v, %v GH/s after the shed", s.Addr, s.Asleep, s.GHs)
				}
			}
			shedWall = time.Since(began)
		}
		if st == nil {
			time.Sleep(5 * time.Millisecond) // waiting for the replay clock, not for a result
		}
	}
	if got, want := shed.Price.String(), "2004.38"; got != want {
		t.Errorf("shed on price %s, want the %s spike", got, want)
	}
	if shedWall > cfg.ShedWithin.Duration {
		t.Errorf("shed took %v, stated within %v", shedWall, cfg.ShedWithin.Duration)
	}
	t.Logf("measured shed: %v from decision to all obeying miners reporting curtailed (controller's own figure %v, including retries of the ignoring miner)", shedWall, shed.Took)
	if len(shed.Failures) != 1 || shed.Failures[0].Machine != ignorer {
		t.Fatalf("failures: got %v, want machine %d reported", shed.Failures, ignorer)
	}
	if !strings.Contains(report.String(), "machine 4 did not obey curtailed") {
		t.Errorf("report does not name the ignoring miner:\n%s", report.String())
	}
	st := fleet.States()[ignorer]
	if st.Asleep || st.GHs == 0 {
		t.Errorf("ignoring miner: got asleep %v %v GH/s, want it still hashing", st.Asleep, st.GHs)
	}
	// Energy evidence: one line per group per completed interval, in the stated shape.
	lines := strings.Split(strings.TrimSpace(energy.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("energy lines: got %d, want at least 2:\n%s", len(lines), energy.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"start", "end", "site", "group", "mode", "machines_on", "energy_wh", "hashrate_ghs"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("energy record lacks %q: %s", k, lines[0])
		}
	}
}

// TestStaleFeedCurtails checks the safe rule: no new price for stale_after sheds all.
func TestStaleFeedCurtails(t *testing.T) {
	cfg, err := power.ReadConfig(strings.NewReader(siteTOML))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := minersim.Start(minersim.Config{Count: 6, Profiles: []minersim.Profile{{Name: "default", THs: 100, Watts: 3450}, {Name: "eco", THs: 80, Watts: 2240}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	cfg.Groups[0].Endpoints = fleet.Addrs()
	t0 := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	ivs := []power.Interval{{Start: t0, Price: 2500}, {Start: t0.Add(15 * time.Minute), Price: 2600}}
	wall := t0.Add(30 * time.Minute)
	clock := func() time.Time { return wall }
	feed, _ := ercot.NewReplay(ivs, 1, t0, t0)
	ctl, err := controller.New(controller.Options{Config: cfg, Feed: feed, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ctl.Step(context.Background())
	if err != nil || st == nil || st.Shed {
		t.Fatalf("fresh step: got %+v, %v; want a normal decision", st, err)
	}
	wall = wall.Add(31 * time.Minute) // the feed publishes nothing after the second interval
	st, err = ctl.Step(context.Background())
	if err != nil || st == nil || !st.Shed || st.Groups[0].Reason != "stale feed" {
		t.Fatalf("stale step: got %+v, %v; want a stale-feed shed", st, err)
	}
	for _, s := range fleet.States() {
		if !s.Asleep {
			t.Errorf("miner %s still running on a stale feed", s.Addr)
		}
	}
}

// gapFeed publishes fixed intervals whatever the time.
type gapFeed []power.Interval

func (f gapFeed) Published(context.Context, time.Time) ([]power.Interval, error) { return f, nil }
func (f gapFeed) MarketTime(wall time.Time) time.Time                            { return wall }

// TestFeedGapLoggedInCentral: a gap in a live feed is logged in US Central time, the
// market's, as the price files write it (CDT in August), not in UTC.
func TestFeedGapLoggedInCentral(t *testing.T) {
	cfg, err := power.ReadConfig(strings.NewReader(siteTOML))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := minersim.Start(minersim.Config{Count: 6, Profiles: []minersim.Profile{{Name: "default", THs: 100, Watts: 3450}, {Name: "eco", THs: 80, Watts: 2240}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	cfg.Groups[0].Endpoints = fleet.Addrs()
	t0 := time.Date(2019, 8, 13, 20, 0, 0, 0, time.UTC) // 15:00 CDT
	feed := gapFeed{{Start: t0, Price: 2500}, {Start: t0.Add(time.Hour), Price: 2600}}
	var logs bytes.Buffer
	ctl, err := controller.New(controller.Options{Config: cfg, Feed: feed, Clock: func() time.Time { return t0.Add(75 * time.Minute) },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := "after=2019-08-13T15:00:00.000-05:00 next=2019-08-13T16:00:00.000-05:00"; !strings.Contains(logs.String(), want) {
		t.Errorf("gap log: got\n%s\nwant it to contain %q", logs.String(), want)
	}
}
