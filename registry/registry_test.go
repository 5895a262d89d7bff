package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func newRegistry(tb testing.TB) (*Registry, Config) {
	tb.Helper()
	clk := &testClock{t: t0.Add(-24 * time.Hour)}
	cfg := Config{Dir: tb.TempDir(), Key: testKey(1), Now: clk.Now}
	r, err := Create(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return r, cfg
}

const (
	minerAddr = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
	otherAddr = "bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf8jz3"
)

// buildSite registers one operator, one site with three groups: ASIC miners declared
// PoW, GPU servers declared AI inference, CPU servers declared chain validation.
func buildSite(tb testing.TB, r *Registry) {
	tb.Helper()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(r.AddOperator(Operator{ID: "op1", Name: "Nordlys Compute AS", Country: "NO", LegalID: "NO 923 456 789"}))
	must(r.AddSite(Site{ID: "s1", Operator: "op1", Name: "Alta hall B", Location: "Alta, Finnmark", Country: "NO", Grid: "Arva 22 kV, meter point 707057500000123456", CapacityKW: 500}))
	must(r.AddDevice(Device{ID: "asic-a", Site: "s1", Group: "miners", Kind: DeviceASIC, Model: "Antminer S19j Pro", Count: 10, RatedW: 3250, PoolAddress: minerAddr, WorkerPattern: "rack1-*"}))
	must(r.AddDevice(Device{ID: "gpu-a", Site: "s1", Group: "inference", Kind: DeviceGPU, Model: "8x H100 SXM server", Count: 4, RatedW: 10200, GPUs: 8, PoolAddress: minerAddr, WorkerPattern: "gpu-*"}))
	must(r.AddDevice(Device{ID: "cpu-a", Site: "s1", Group: "nodes", Kind: DeviceCPU, Model: "2U EPYC", Count: 2, RatedW: 600}))
	classes := DefaultClasses()
	must(r.Declare(classes, "s1", "miners", "pow-mining", t0.Add(-time.Hour), ""))
	must(r.Declare(classes, "s1", "inference", "ai-inference", t0.Add(-time.Hour), "customer LLM serving"))
	must(r.Declare(classes, "s1", "nodes", "chain-validation", t0.Add(-time.Hour), "bitcoind and btcd"))
}

// energyLog is one hour of controller intervals (15 minutes) for the three groups. The
// miners draw 30 kW (7500 Wh a quarter), the GPU servers 36 kW (9000 Wh), the nodes 800
// W (200 Wh). Miners report hashrate; so, in the third quarter, do the GPU servers.
func energyLog() string {
	var b strings.Builder
	for q := 0; q < 4; q++ {
		s, e := t0.Add(time.Duration(q)*15*time.Minute), t0.Add(time.Duration(q+1)*15*time.Minute)
		gpuHash := 0.0
		if q == 2 {
			gpuHash = 2.5
		}
		for _, g := range []struct {
			name, mode string
			on, wh     int
			ghs        float64
		}{{"miners", "full", 10, 7500, 1040000}, {"inference", "serve", 4, 9000, gpuHash}, {"nodes", "on", 2, 200, 0}} {
			fmt.Fprintf(&b, `{"start":%q,"end":%q,"site":"s1","group":%q,"mode":%q,"machines_on":%d,"energy_wh":%d,"hashrate_ghs":%g}`+"\n",
				s.Format(time.RFC3339), e.Format(time.RFC3339), g.name, g.mode, g.on, g.wh, g.ghs)
		}
	}
	return b.String()
}

// siteMeter is the site's main meter for the same hour: the groups' 66800 Wh plus 3200
// Wh of cooling and lighting, within the tolerance only if cooling were declared.
func siteMeter(extraWh int) string {
	var b strings.Builder
	b.WriteString(MeterHeader + "\n")
	for q := 0; q < 4; q++ {
		s, e := t0.Add(time.Duration(q)*15*time.Minute), t0.Add(time.Duration(q+1)*15*time.Minute)
		fmt.Fprintf(&b, "main,s1,,%s,%s,%d\n", s.Format(time.RFC3339), e.Format(time.RFC3339), 16700+extraWh/4)
	}
	return b.String()
}

const jobsLog = `{"job":"llm-serve-0301","device_group":"inference","start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","gpu_hours":24.5,"revenue_micro_usd":61250000}
{"job":"embed-batch-77","device_group":"inference","start":"2026-03-02T10:15:00Z","end":"2026-03-02T10:45:00Z","gpu_hours":4}
`

// workSource is an in-memory pool: the one method of hashgrid.ShareStore the registry uses.
type workSource struct {
	workers []hashgrid.Worker
	from    time.Time
	to      time.Time
}

func (w *workSource) WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error) {
	w.from, w.to = from, to
	return w.workers, nil
}

// diffWork is n shares at difficulty d.
func diffWork(n uint64, d float64) hashgrid.Work {
	var w hashgrid.Work
	for i := uint64(0); i < n; i++ {
		w = w.Add(hashgrid.DiffFromFloat(d))
	}
	return w
}

func poolWorkers() []hashgrid.Worker {
	return []hashgrid.Worker{
		{Address: minerAddr, Name: "rack1-01", Accepted: 1800, Rejected: 3, Work: diffWork(1800, 65536)},
		{Address: minerAddr, Name: "rack1-02", Accepted: 1750, Rejected: 5, Work: diffWork(1750, 65536)},
		{Address: minerAddr, Name: "gpu-07", Accepted: 12, Rejected: 1, Work: diffWork(12, 0.5)},
		{Address: otherAddr, Name: "x", Accepted: 999, Work: diffWork(999, 1024)},
	}
}

func TestReportFromSources(t *testing.T) {
	r, cfg := newRegistry(t)
	buildSite(t, r)
	if _, err := r.ImportEnergy(strings.NewReader(energyLog()), "energy.jsonl", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImportMeters(strings.NewReader(siteMeter(3200)), "main.csv", false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImportJobs(strings.NewReader(jobsLog), "jobs.jsonl", "s1"); err != nil {
		t.Fatal(err)
	}
	ws := &workSource{workers: poolWorkers()}
	res, err := r.ImportPool(context.Background(), ws, "s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Added, 3; got != want {
		t.Errorf("pool workers recorded: got %d, want %d (other addresses left out)", got, want)
	}
	if err := r.AddRevenue(RevenueRecord{Site: "s1", Group: "miners", From: t0, To: t0.Add(time.Hour), Sat: 2_150_000, Source: "pool payout 2026-03-02"}); err != nil {
		t.Fatal(err)
	}

	f, rep, page, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	byClass := map[string]ClassTotal{}
	for _, c := range rep.Classes {
		byClass[c.Class] = c
	}
	// Energy totals match the controller log; site meter matches the CSV.
	for class, want := range map[string]int64{"pow-mining": 30000, "ai-inference": 36000, "chain-validation": 800} {
		if got := byClass[class].EnergyWh; got != want {
			t.Errorf("energy of %s: got %d Wh, want %d", class, got, want)
		}
	}
	if got, want := rep.Energy.GroupsWh, int64(66800); got != want {
		t.Errorf("groups energy: got %d, want %d", got, want)
	}
	if got, want := rep.Energy.SiteMeterWh, int64(70000); got != want {
		t.Errorf("site meter: got %d, want %d", got, want)
	}
	// Shares match the pool.
	pow := byClass["pow-mining"]
	if pow.Accepted != 3550 || pow.Rejected != 8 {
		t.Errorf("pow shares: got %d/%d, want 3550/8", pow.Accepted, pow.Rejected)
	}
	if got, want := pow.Hashes, diffWork(3550, 65536).Big().String(); got != want {
		t.Errorf("pow hashes: got %s, want %s", got, want)
	}
	if got, want := pow.Hashes, fmt.Sprint(uint64(3550)*65536<<32); got != want {
		t.Errorf("pow hashes: got %s, want 3550·65536·2^32 = %s", got, want)
	}
	if got, want := pow.RevenueSat, int64(2_150_000); got != want {
		t.Errorf("pow revenue: got %d, want %d", got, want)
	}
	inf := byClass["ai-inference"]
	if got, want := inf.GPUMilliHours, int64(28500); got != want {
		t.Errorf("inference GPU-hours: got %s, want 28.500", milli(got))
	}
	if got, want := inf.RevenueMicroUSD, int64(61_250_000); got != want {
		t.Errorf("inference revenue: got %d µUSD, want %d", got, want)
	}
	if inf.Accepted != 12 {
		t.Errorf("inference shares: got %d, want 12", inf.Accepted)
	}

	// The planted discrepancy: GPU servers declared AI inference that mine.
	codes := map[string][]Discrepancy{}
	for _, d := range rep.Discrepancies {
		codes[d.Code] = append(codes[d.Code], d)
	}
	ds := codes["pow_shares_undeclared"]
	if len(ds) != 1 || ds[0].Group != "inference" || ds[0].Severity != SeverityError || !strings.Contains(ds[0].Evidence[0], "gpu-07") {
		t.Errorf("pow_shares_undeclared: got %+v, want one error for group inference naming worker gpu-07", ds)
	}
	if ds := codes["controller_hashrate_undeclared"]; len(ds) != 1 || ds[0].Group != "inference" {
		t.Errorf("controller_hashrate_undeclared: got %+v, want one for inference", ds)
	}
	// 3200 Wh of the 70000 Wh the site meter shows is in no group: above 2 %.
	if ds := codes["energy_unaccounted"]; len(ds) != 1 || !strings.Contains(ds[0].Evidence[0], "unaccounted 3200 Wh") {
		t.Errorf("energy_unaccounted: got %+v, want one naming 3200 Wh", ds)
	}
	for _, d := range rep.Discrepancies {
		if d.Group == "miners" || d.Group == "nodes" {
			t.Errorf("unexpected discrepancy for an honest group: %+v", d)
		}
	}
	if len(rep.Discrepancies) != 3 {
		t.Errorf("discrepancies: got %d, want 3: %+v", len(rep.Discrepancies), rep.Discrepancies)
	}

	// The HTML page names the finding and escapes what it shows.
	if !bytes.Contains(page, []byte("pow_shares_undeclared")) || !bytes.Contains(page, []byte("Nordlys Compute AS")) {
		t.Errorf("HTML page lacks the finding or the operator")
	}

	// The files verify offline, against the log too, and the log verifies.
	jp, hp, err := SaveReport(filepath.Join(cfg.Dir, "reports"), f, page)
	if err != nil {
		t.Fatal(err)
	}
	jb, _ := os.ReadFile(jp)
	hb, _ := os.ReadFile(hp)
	lb, _ := os.ReadFile(r.Path())
	chk, err := VerifyReport(jb, nil, hb, lb)
	if err != nil {
		t.Fatal(err)
	}
	if !chk.KeyPinned || !chk.HTMLOK || !chk.InLog || chk.Seq != f.Entry.Seq {
		t.Errorf("report check: got %+v", chk)
	}
	sum, err := VerifyLog(bytes.NewReader(lb), testKey(1).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if sum.HeadSeq != f.Entry.Seq {
		t.Errorf("log head: got %d, want %d", sum.HeadSeq, f.Entry.Seq)
	}

	// Reopening replays the same state and gives the same report.
	r2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := r2.State()
	if len(st.Energy) != 12 || len(st.Jobs) != 2 || len(st.Pool) != 1 || len(st.Reports) != 1 || len(st.Devices) != 3 {
		t.Errorf("replayed state: %d energy, %d jobs, %d pool, %d reports, %d devices", len(st.Energy), len(st.Jobs), len(st.Pool), len(st.Reports), len(st.Devices))
	}
	rep2, err := buildReport(&st, "s1", t0, t0.Add(time.Hour), rep.Generated)
	if err != nil {
		t.Fatal(err)
	}
	rep2.LogHeadSeq, rep2.LogHeadHash = rep.LogHeadSeq, rep.LogHeadHash
	a, _ := json.Marshal(rep)
	b, _ := json.Marshal(rep2)
	if !bytes.Equal(a, b) {
		t.Errorf("report after replay differs:\n%s\n%s", a, b)
	}
}

func TestReimportSkipsKnownRecords(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	res, err := r.ImportEnergy(strings.NewReader(energyLog()), "energy.jsonl", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 12 {
		t.Fatalf("first import: got %d added, want 12", res.Added)
	}
	// The controller appended one more interval; the old ones are skipped.
	more := energyLog() + `{"start":"2026-03-02T11:00:00Z","end":"2026-03-02T11:15:00Z","site":"s1","group":"nodes","mode":"on","machines_on":2,"energy_wh":200,"hashrate_ghs":0}` + "\n"
	res, err = r.ImportEnergy(strings.NewReader(more), "energy.jsonl", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 1 || res.Skipped != 12 {
		t.Errorf("second import: got %d added, %d skipped; want 1, 12", res.Added, res.Skipped)
	}
	// The same interval with another figure is refused.
	changed := strings.Replace(energyLog(), `"energy_wh":7500`, `"energy_wh":7000`, 1)
	if _, err := r.ImportEnergy(strings.NewReader(changed), "energy.jsonl", ""); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("changed interval: got %v, want an error saying it differs", err)
	}
	// Meter readings: importing a grown file adds only the new reading.
	if _, err := r.ImportMeters(strings.NewReader(siteMeter(0)), "m.csv", false); err != nil {
		t.Fatal(err)
	}
	grown := siteMeter(0) + "main,s1,,2026-03-02T11:00:00Z,2026-03-02T11:15:00Z,16700\n"
	res, err = r.ImportMeters(strings.NewReader(grown), "m.csv", false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 1 || res.Skipped != 4 {
		t.Errorf("meter re-import: got %d added, %d skipped; want 1, 4", res.Added, res.Skipped)
	}
	// A pool snapshot overlapping one already recorded would count shares twice.
	ws := &workSource{workers: poolWorkers()}
	if _, err := r.ImportPool(context.Background(), ws, "s1", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImportPool(context.Background(), ws, "s1", t0.Add(30*time.Minute), t0.Add(90*time.Minute)); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping pool snapshot: got %v, want an overlap error", err)
	}
}

func TestBadInput(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"unknown class", func() error {
			return r.Declare(DefaultClasses(), "s1", "nodes", "proof-of-stake-farming", t0, "")
		}, `unknown workload class "proof-of-stake-farming"`},
		{"duplicate device", func() error {
			return r.AddDevice(Device{ID: "asic-a", Site: "s1", Group: "miners", Kind: DeviceASIC, Count: 1, RatedW: 3000})
		}, `duplicate device "asic-a"`},
		{"device at unknown site", func() error {
			return r.AddDevice(Device{ID: "asic-z", Site: "s9", Group: "miners", Kind: DeviceASIC, Count: 1, RatedW: 3000})
		}, `unknown site "s9"`},
		{"device kind", func() error {
			return r.AddDevice(Device{ID: "fpga-1", Site: "s1", Group: "x", Kind: "fpga", Count: 1, RatedW: 300})
		}, `kind "fpga"`},
		{"gpu without gpus", func() error {
			return r.AddDevice(Device{ID: "gpu-z", Site: "s1", Group: "x", Kind: DeviceGPU, Count: 1, RatedW: 300})
		}, "number of GPUs"},
		{"bad worker pattern", func() error {
			return r.AddDevice(Device{ID: "asic-z", Site: "s1", Group: "x", Kind: DeviceASIC, Count: 1, RatedW: 300, PoolAddress: minerAddr, WorkerPattern: "rack[1"})
		}, "worker pattern"},
		{"workload for empty group", func() error {
			return r.Declare(DefaultClasses(), "s1", "ghost", "storage", t0, "")
		}, `no devices in group "ghost"`},
		{"duplicate site", func() error {
			return r.AddSite(Site{ID: "s1", Operator: "op1", Name: "x", Location: "y", Grid: "z", CapacityKW: 1})
		}, `duplicate site "s1"`},
		{"meter gap", func() error {
			csv := MeterHeader + "\n" +
				"m1,s1,miners,2026-03-02T10:00:00Z,2026-03-02T10:15:00Z,7500\n" +
				"m1,s1,miners,2026-03-02T10:15:00Z,2026-03-02T10:30:00Z,7500\n" +
				"m1,s1,miners,2026-03-02T10:45:00Z,2026-03-02T11:00:00Z,7500\n"
			_, err := r.ImportMeters(strings.NewReader(csv), "m1.csv", false)
			return err
		}, "meter m1: no reading 2026-03-02T10:30:00Z..2026-03-02T10:45:00Z (between line 3 and line 4)"},
		{"meter overlap", func() error {
			csv := MeterHeader + "\n" +
				"m1,s1,miners,2026-03-02T10:00:00Z,2026-03-02T10:30:00Z,15000\n" +
				"m1,s1,miners,2026-03-02T10:15:00Z,2026-03-02T10:45:00Z,15000\n"
			_, err := r.ImportMeters(strings.NewReader(csv), "m1.csv", false)
			return err
		}, "line 3: meter m1 reading 2026-03-02T10:15:00Z..2026-03-02T10:45:00Z overlaps line 2"},
		{"meter fractional Wh", func() error {
			csv := MeterHeader + "\nm1,s1,miners,2026-03-02T10:00:00Z,2026-03-02T10:15:00Z,7500.5\n"
			_, err := r.ImportMeters(strings.NewReader(csv), "m1.csv", false)
			return err
		}, "line 2: energy_wh: 7500.5 is not a whole number"},
		{"meter header", func() error {
			_, err := r.ImportMeters(strings.NewReader("meter,site,start,end,wh,x\n"), "m1.csv", false)
			return err
		}, "line 1: header"},
		{"energy bad time", func() error {
			_, err := r.ImportEnergy(strings.NewReader(energyLog()+`{"start":"yesterday","end":"2026-03-02T11:00:00Z","site":"s1","group":"g","mode":"x","machines_on":1,"energy_wh":1}`+"\n"), "e", "")
			return err
		}, `line 13: start: "yesterday" is not an RFC 3339 time`},
		{"energy unknown site", func() error {
			_, err := r.ImportEnergy(strings.NewReader(strings.ReplaceAll(energyLog(), `"site":"s1"`, `"site":"s7"`)), "e", "")
			return err
		}, `unknown site "s7"`},
		{"energy end before start", func() error {
			_, err := r.ImportEnergy(strings.NewReader(`{"start":"2026-03-02T11:00:00Z","end":"2026-03-02T10:00:00Z","site":"s1","group":"g","mode":"x","machines_on":1,"energy_wh":1}`), "e", "")
			return err
		}, "line 1: end 2026-03-02T10:00:00Z is not after start"},
		{"job for unknown group", func() error {
			_, err := r.ImportJobs(strings.NewReader(strings.ReplaceAll(jobsLog, "inference", "training")), "jobs", "s1")
			return err
		}, `unknown device group "training"`},
		{"job repeated", func() error {
			_, err := r.ImportJobs(strings.NewReader(jobsLog+strings.SplitAfter(jobsLog, "\n")[0]), "jobs", "s1")
			return err
		}, `line 3: job "llm-serve-0301" already on line 1`},
		{"job negative gpu hours", func() error {
			_, err := r.ImportJobs(strings.NewReader(`{"job":"j","device_group":"inference","start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","gpu_hours":-1}`), "jobs", "s1")
			return err
		}, "line 1: gpu_hours: -1 is not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.State().HeadSeq
			err := tt.do()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if got := r.State().HeadSeq; got != before {
				t.Errorf("a refused change was logged: head %d, want %d", got, before)
			}
		})
	}
}

func TestMeterGapsAllowedAreFlagged(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	csv := MeterHeader + "\n" +
		"m1,s1,miners,2026-03-02T10:00:00Z,2026-03-02T10:30:00Z,15000\n" +
		"m1,s1,miners,2026-03-02T10:45:00Z,2026-03-02T11:00:00Z,7500\n"
	res, err := r.ImportMeters(strings.NewReader(csv), "m1.csv", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Gaps) != 1 {
		t.Fatalf("gaps: got %d, want 1", len(res.Gaps))
	}
	_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range rep.Discrepancies {
		if d.Code == "meter_gap" && d.Group == "miners" {
			found = true
		}
	}
	if !found {
		t.Errorf("no meter_gap discrepancy in %+v", rep.Discrepancies)
	}
	if g := rep.Groups[0]; g.Group != "inference" {
		t.Fatalf("groups not sorted: %v", g.Group)
	}
	for _, g := range rep.Groups {
		if g.Group == "miners" && (g.EnergySource != "meter" || g.EnergyWh != 22500) {
			t.Errorf("miners energy: got %d Wh from %s, want 22500 from meter", g.EnergyWh, g.EnergySource)
		}
	}
}

func TestGPUHoursOverCapacity(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	// 4 servers × 8 GPUs = 32 GPUs: at most 32 GPU-hours in an hour.
	jobs := `{"job":"big","device_group":"inference","start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","gpu_hours":40}` + "\n"
	if _, err := r.ImportJobs(strings.NewReader(jobs), "jobs", "s1"); err != nil {
		t.Fatal(err)
	}
	_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range rep.Discrepancies {
		if d.Code == "gpu_hours_exceed_capacity" {
			n++
			if !strings.Contains(strings.Join(d.Evidence, " "), "32.000 GPU-hours") {
				t.Errorf("evidence %q does not name the capacity", d.Evidence)
			}
		}
	}
	if n != 2 {
		t.Errorf("gpu_hours_exceed_capacity: got %d, want 2 (the job and the group)", n)
	}
}

// TestCPUHoursOverCapacity: leased compute's job records claim CPU-hours, which the
// group's declared cores bound: 2 machines × 16 cores give 32 CPU-hours an hour; 30
// fit, 40 do not, and a group that declared no cores can claim none.
func TestCPUHoursOverCapacity(t *testing.T) {
	count := func(rep *Report, group string) (n int, evidence string) {
		for _, d := range rep.Discrepancies {
			if d.Code == "cpu_hours_exceed_capacity" && d.Group == group {
				n++
				evidence += strings.Join(d.Evidence, " ")
			}
		}
		return n, evidence
	}
	for _, c := range []struct {
		name       string
		cores      int64
		cpuHours   string
		want       int
		evidence   string
		groupMilli int64
	}{
		{"within", 16, "30", 0, "", 32000},
		{"over", 16, "40", 2, "32.000 CPU-hours", 32000},
		{"no cores declared", 0, "0.5", 2, "0 cores", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := newRegistry(t)
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(r.AddOperator(Operator{ID: "op1", Name: "Nordlys Compute AS", Country: "NO"}))
			must(r.AddSite(Site{ID: "s1", Operator: "op1", Name: "Alta hall B", Location: "Alta", Country: "NO", Grid: "Arva 22 kV", CapacityKW: 500}))
			must(r.AddDevice(Device{ID: "cpu-l", Site: "s1", Group: "leased", Kind: DeviceCPU, Model: "2U EPYC", Count: 2, RatedW: 600, Cores: c.cores}))
			must(r.Declare(DefaultClasses(), "s1", "leased", "ai-inference", t0.Add(-time.Hour), "leased through hashgrid's market"))
			jobs := `{"job":"lease-1","device_group":"leased","start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","cpu_hours":` + c.cpuHours + "}\n"
			if _, err := r.ImportJobs(strings.NewReader(jobs), "jobs", "s1"); err != nil {
				t.Fatal(err)
			}
			_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			n, ev := count(rep, "leased")
			if n != c.want || !strings.Contains(ev, c.evidence) {
				t.Errorf("cpu_hours_exceed_capacity: %d (%q), want %d naming %q", n, ev, c.want, c.evidence)
			}
			if g := rep.Groups[0]; g.CPUCapacityMilliHr != c.groupMilli {
				t.Errorf("group CPU capacity %d milli-hours, want %d", g.CPUCapacityMilliHr, c.groupMilli)
			}
		})
	}
	r, _ := newRegistry(t)
	buildSite(t, r)
	if err := r.AddDevice(Device{ID: "cpu-x", Site: "s1", Group: "nodes", Kind: DeviceCPU, Count: 1, RatedW: 500, Cores: -1}); err == nil {
		t.Error("negative cores accepted")
	}
}

func TestUndeclaredEnergyAndPositiveList(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	if err := r.AddDevice(Device{ID: "cpu-b", Site: "s1", Group: "spare", Kind: DeviceCPU, Count: 1, RatedW: 500}); err != nil {
		t.Fatal(err)
	}
	classes := DefaultClasses()
	if err := classes.Extend(strings.NewReader(`{"classes":[{"id":"pow-mining","name":"Proof-of-work mining","industry":"ISIC4:6399","on_positive_list":false,"proof_of_work":true}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Declare(classes, "s1", "miners", "pow-mining", t0.Add(-30*time.Minute), "re-declared under the local list"); err != nil {
		t.Fatal(err)
	}
	log := `{"start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","site":"s1","group":"spare","mode":"on","machines_on":1,"energy_wh":450,"hashrate_ghs":0}
{"start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","site":"s1","group":"attic","mode":"on","machines_on":1,"energy_wh":900,"hashrate_ghs":0}
`
	if _, err := r.ImportEnergy(strings.NewReader(log), "energy.jsonl", "s1"); err != nil {
		t.Fatal(err)
	}
	_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range rep.Discrepancies {
		got[d.Code+"/"+d.Group] = d.Severity
	}
	for _, want := range []string{"energy_undeclared/spare", "energy_unregistered_group/attic", "class_not_on_positive_list/miners", "no_pool_evidence/miners"} {
		if _, ok := got[want]; !ok {
			t.Errorf("missing discrepancy %s; got %v", want, got)
		}
	}
	var undeclared ClassTotal
	for _, c := range rep.Classes {
		if c.Class == ClassUndeclared {
			undeclared = c
		}
	}
	if undeclared.EnergyWh != 1350 {
		t.Errorf("undeclared energy: got %d Wh, want 1350", undeclared.EnergyWh)
	}
}

func TestProrate(t *testing.T) {
	s, e := t0, t0.Add(time.Hour)
	tests := []struct {
		from, to time.Time
		want     int64
	}{
		{s, e, 1000},
		{s.Add(-time.Hour), e.Add(time.Hour), 1000},
		{s.Add(15 * time.Minute), e, 750},
		{s, s.Add(20 * time.Minute), 333},
		{e, e.Add(time.Hour), 0},
	}
	for _, tt := range tests {
		if got := prorate(1000, s, e, tt.from, tt.to); got != tt.want {
			t.Errorf("prorate(1000, %s..%s): got %d, want %d", tt.from.Format(time.Kitchen), tt.to.Format(time.Kitchen), got, tt.want)
		}
	}
}

func TestOpenWrongKey(t *testing.T) {
	_, cfg := newRegistry(t)
	cfg.Key = testKey(2)
	_, err := Open(cfg)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Seq != 1 || !strings.Contains(ce.Problem, "pinned") {
		t.Errorf("open with another key: got %v, want entry 1 failing the pinned key", err)
	}
}

func TestHTMLEscapes(t *testing.T) {
	r, _ := newRegistry(t)
	if err := r.AddOperator(Operator{ID: "op1", Name: `<script>alert("x")</script>`}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddSite(Site{ID: "s1", Operator: "op1", Name: "a&b", Location: "<b>here</b>", Grid: "g", CapacityKW: 1}); err != nil {
		t.Fatal(err)
	}
	_, _, page, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "<b>here"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	if !bytes.Contains(page, []byte("&lt;script&gt;")) {
		t.Errorf("page lacks the escaped operator name")
	}
	for _, ext := range []string{"src=", "href=", "@import", "url("} {
		if bytes.Contains(page, []byte(ext)) {
			t.Errorf("page refers to an external asset (%s)", ext)
		}
	}
}
