package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/controller"
	"github.com/hashgrid/hashgrid/power/ercot"
	"github.com/hashgrid/hashgrid/power/minersim"
	"github.com/hashgrid/hashgrid/registry"
	"github.com/hashgrid/hashgrid/sqlite"
)

// e2eSiteTOML is the power site of TestRegistryEndToEnd: two groups of two emulated
// machines each, named like the registry's device groups. Its name is the registry's
// site id, so the controller's energy lines belong to that site.
const e2eSiteTOML = `
name = "west-1"
zone = "LZ_WEST"
capacity_mw = 1.0
pool_fee = 0.02
shed_price = 1000.0
shed_within = "2s"
stale_after = "30m"
[prices]
speed = 3600.0
poll = "10ms"
[bitcoin]
difficulty = 10.0e12
btc_usd = 35000.0
fees_btc_per_block = 0.3
[[group]]
name = "asic-a"
count = 2
min_on = "15m"
min_off = "30m"
stagger_batch = 1
stagger_every = "20ms"
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
[[group]]
name = "gpu-b"
count = 2
min_on = "15m"
min_off = "30m"
stagger_batch = 1
stagger_every = "20ms"
sleep_watts = 12
protocol = "luxos"
  [[group.mode]]
  name = "full"
  ths = 100.0
  watts = 3450.0
  profile = "default"
[control]
timeout = "1s"
retries = 1
backoff = "20ms"
`

// e2ePrices are the real LZ_WEST real-time prices of 13 August 2019, 12:00 to 15:45
// CDT, in $/MWh ×100 (power/backtest/testdata/ercot-2019.csv.gz): a quiet hour, then the climb to
// the cap that makes the controller shed.
var e2ePrices = []power.Price{4455, 3727, 4407, 9718, 21609, 52061, 95004, 200438, 216162, 387862, 677018, 680706, 707168, 902157, 903163, 903000}

// TestRegistryEndToEnd builds a site from real evidence: a hashgrid pool on a regtest
// btcd with two hashgrid miners (one under a worker of a group declared as PoW mining,
// one under a worker of a group declared as AI inference), and the power controller
// driving emulated ASICs through a replayed price series, writing energy.jsonl. The
// registry imports the pool's SQLite store and the energy file; the report's share
// totals must equal the store's, its energy totals the sum of the energy lines; the AI
// group that mines must be flagged; and verify must pass on the log and the report and
// fail after a one-byte change to either.
func TestRegistryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	began := time.Now()
	dir := t.TempDir()
	poolData := filepath.Join(dir, "pool")
	regData := filepath.Join(dir, "registry")
	powerData := filepath.Join(dir, "power")
	for _, d := range []string{poolData, powerData} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Pool evidence: real shares from real miners, through the pool into its store.
	btcd := regtest.StartT(t)
	poolCfg := PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: poolData, Tag: "/registry-e2e/",
		PollInterval: 100 * time.Millisecond, TrackInterval: 300 * time.Millisecond, ShareInterval: time.Second, LogLevel: "warn",
	}
	r, stopPool := startPool(t, poolCfg)
	poolStopped := false
	defer func() {
		if !poolStopped {
			stopPool()
		}
	}()
	addrA, addrB := regtest.TestAddress(), regtest.TestAddressP2PKH()
	users := []string{addrA + ".rig-a1", addrB + ".gpu-b1"}
	poolFrom := time.Now().UTC().Truncate(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	miners := make([]*miner.Miner, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + r.Stratum, User: u, MaxRetryWait: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		miners[i] = m
		wg.Go(func() { m.Run(ctx) })
	}
	waitFor(t, 30*time.Second, "3 accepted shares from each miner", func() bool {
		return miners[0].Stats().Accepted >= 3 && miners[1].Stats().Accepted >= 3
	})
	cancel()
	wg.Wait()
	var minersAccepted uint64
	for _, m := range miners {
		minersAccepted += m.Stats().Accepted
	}
	base := "http://" + r.API
	waitFor(t, 10*time.Second, "the store to hold every accepted share", func() bool {
		var info api.PoolInfo
		getJSON(t, base+"/api/v1/pool", &info)
		return info.SharesAccepted == minersAccepted
	})
	stopPool()
	poolStopped = true
	poolTo := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	dbPath := filepath.Join(poolData, "hashgrid.db")
	store, err := sqlite.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	storeWorkers, err := store.WorkBetween(context.Background(), poolFrom, poolTo)
	if err != nil {
		t.Fatal(err)
	}
	// The accepted shares themselves, for the groups' Merkle roots.
	storeShares, err := store.Shares(context.Background(), 0, 1<<62, 1_000_000)
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	// What the store says each group's workers did: the figures the report must show.
	type shares struct {
		accepted, rejected uint64
		work               hashgrid.Work
	}
	wantShares := map[string]*shares{"asic-a": {}, "gpu-b": {}}
	var storeAccepted uint64
	for _, w := range storeWorkers {
		g := map[string]string{addrA + ".rig-a1": "asic-a", addrB + ".gpu-b1": "gpu-b"}[w.Address+"."+w.Name]
		if g == "" {
			t.Fatalf("store has a worker %s.%s no miner used", w.Address, w.Name)
		}
		s := wantShares[g]
		s.accepted += w.Accepted
		s.rejected += w.Rejected
		s.work = s.work.Plus(w.Work)
		storeAccepted += w.Accepted
	}
	if storeAccepted != minersAccepted {
		t.Fatalf("store: %d accepted shares in %s..%s, miners were told %d", storeAccepted, poolFrom, poolTo, minersAccepted)
	}

	// Energy evidence: the controller drives emulated machines through the replayed
	// prices and writes energy.jsonl, as in 'hashgrid power run'.
	cfg, err := power.ReadConfig(strings.NewReader(e2eSiteTOML))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := minersim.Start(minersim.Config{Count: 4, SleepWatts: 12, Profiles: []minersim.Profile{
		{Name: "default", THs: 100, Watts: 3450}, {Name: "eco", THs: 80, Watts: 2240}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	cfg.Groups[0].Endpoints = fleet.Addrs()[:2]
	cfg.Groups[1].Endpoints = fleet.Addrs()[2:]
	// The replayed series is placed just before the pool's period, so one report
	// period covers both kinds of evidence.
	t0 := poolFrom.Truncate(power.IntervalLength).Add(-time.Duration(len(e2ePrices)) * power.IntervalLength)
	ivs := make([]power.Interval, len(e2ePrices))
	for i, p := range e2ePrices {
		ivs[i] = power.Interval{Start: t0.Add(time.Duration(i) * power.IntervalLength), Price: p}
	}
	replay, err := ercot.NewReplay(ivs, cfg.Prices.Speed, t0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	energyPath := filepath.Join(powerData, "energy.jsonl")
	ef, err := os.Create(energyPath)
	if err != nil {
		t.Fatal(err)
	}
	var ctlReport bytes.Buffer
	ctl, err := controller.New(controller.Options{Config: cfg, Feed: replay, Energy: ef, Report: &ctlReport})
	if err != nil {
		t.Fatal(err)
	}
	// Every published price is decided; the decision after the last one writes the
	// energy of every interval before it: len-1 intervals for each of the two groups.
	wantLines := (len(ivs) - 1) * len(cfg.Groups)
	shed := false
	waitFor(t, 20*time.Second, "the controller to run the replayed prices", func() bool {
		st, err := ctl.Step(context.Background())
		if err != nil {
			t.Fatalf("controller step: %v", err)
		}
		if st != nil && st.Shed {
			shed = true
			if len(st.Failures) != 0 {
				t.Errorf("shed: machines did not obey: %v", st.Failures)
			}
		}
		return countLines(t, energyPath) >= wantLines
	})
	if err := ef.Close(); err != nil {
		t.Fatal(err)
	}
	if !shed {
		t.Errorf("the replayed spike made no shed; controller report:\n%s", ctlReport.String())
	}
	for _, s := range fleet.States() {
		if !s.Asleep || s.GHs != 0 {
			t.Errorf("minersim %s after the spike: asleep %v, %v GH/s; want curtailed", s.Addr, s.Asleep, s.GHs)
		}
	}
	wantWh := map[string]int64{}
	var wantTotalWh int64
	hashing := map[string]bool{}
	for _, rec := range readEnergy(t, energyPath) {
		wantWh[rec.Group] += rec.EnergyWh
		wantTotalWh += rec.EnergyWh
		hashing[rec.Group] = hashing[rec.Group] || rec.HashrateGHs > 0
	}
	if wantWh["asic-a"] == 0 || wantWh["gpu-b"] == 0 || !hashing["gpu-b"] {
		t.Fatalf("energy lines: %v Wh by group, hashing %v; want both groups drawing power and gpu-b hashing", wantWh, hashing)
	}

	// The registry: operator, site, devices, declarations, then the evidence.
	d := "-data=" + regData
	from := t0.Add(-time.Hour).Truncate(time.Hour)
	to := poolTo.Add(time.Hour).Truncate(time.Hour)
	declared := "-from=" + from.Add(-time.Hour).Format(time.RFC3339)
	out := mustRun(t, "registry", "init", d, "-operator=op1", "-name=West Texas Compute LLC", "-country=US")
	pub := regexp.MustCompile(`public key ([0-9a-f]{64})`).FindStringSubmatch(out)
	if pub == nil {
		t.Fatalf("init printed no public key:\n%s", out)
	}
	mustRun(t, "registry", "site", "add", d, "-id=west-1", "-operator=op1", "-location=Pecos County, TX", "-grid=Oncor 138 kV", "-capacity-kw=1000")
	mustRun(t, "registry", "device", "add", d, "-id=s19-rack1", "-site=west-1", "-group=asic-a", "-kind=asic", "-model=Antminer S19",
		"-count=2", "-rated-w=3450", "-pool-address="+addrA, "-workers=rig-a*")
	mustRun(t, "registry", "device", "add", d, "-id=gpu-rack1", "-site=west-1", "-group=gpu-b", "-kind=gpu", "-model=8-GPU inference server",
		"-count=2", "-rated-w=3450", "-gpus=8", "-pool-address="+addrB, "-workers=gpu-b*")
	mustRun(t, "registry", "workload", "add", d, "-site=west-1", "-group=asic-a", "-class=pow-mining", declared)
	mustRun(t, "registry", "workload", "add", d, "-site=west-1", "-group=gpu-b", "-class=ai-inference", declared)
	mustRun(t, "registry", "import-energy", d, "-file="+energyPath, "-site=west-1")
	// The pool on regtest keeps every share's header: sample rate 1.
	mustRun(t, "registry", "import-pool", d, "-db="+dbPath, "-site=west-1", "-sample-rate=1",
		"-from="+poolFrom.Format(time.RFC3339), "-to="+poolTo.Format(time.RFC3339))
	reports := filepath.Join(dir, "reports")
	out = mustRun(t, "registry", "report", d, "-site=west-1", "-from="+from.Format(time.RFC3339), "-to="+to.Format(time.RFC3339), "-out="+reports)
	paths := regexp.MustCompile(`(?m)^(\S+\.json)\n(\S+\.html)$`).FindStringSubmatch(out)
	if paths == nil {
		t.Fatalf("report printed no file names:\n%s", out)
	}
	jsonPath, htmlPath := paths[1], paths[2]
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var file registry.ReportFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	var rep registry.Report
	if err := json.Unmarshal(file.Report, &rep); err != nil {
		t.Fatal(err)
	}

	// Share and energy totals match the sources.
	var gotTotalWh int64
	for _, gr := range rep.Groups {
		want, ok := wantShares[gr.Group]
		if !ok {
			t.Errorf("report has a group %q the site does not", gr.Group)
			continue
		}
		if gr.Accepted != want.accepted || gr.Rejected != want.rejected || gr.Hashes != want.work.Big().String() {
			t.Errorf("group %s shares: got %d accepted, %d rejected, %s hashes; store says %d, %d, %s",
				gr.Group, gr.Accepted, gr.Rejected, gr.Hashes, want.accepted, want.rejected, want.work.Big())
		}
		if gr.EnergyWh != wantWh[gr.Group] || gr.ControllerWh != wantWh[gr.Group] || gr.EnergySource != "controller" {
			t.Errorf("group %s energy: got %d Wh (controller %d, source %q); energy.jsonl sums to %d",
				gr.Group, gr.EnergyWh, gr.ControllerWh, gr.EnergySource, wantWh[gr.Group])
		}
		gotTotalWh += gr.EnergyWh
	}
	if len(rep.Groups) != 2 {
		t.Errorf("report groups: got %d, want 2", len(rep.Groups))
	}
	if gotTotalWh != wantTotalWh || rep.Energy.GroupsWh != wantTotalWh {
		t.Errorf("site energy: groups sum to %d Wh, report says %d; energy.jsonl sums to %d", gotTotalWh, rep.Energy.GroupsWh, wantTotalWh)
	}
	classWh := map[string]int64{}
	classShares := map[string]uint64{}
	for _, c := range rep.Classes {
		classWh[c.Class] += c.EnergyWh
		classShares[c.Class] += c.Accepted
	}
	if classWh["pow-mining"] != wantWh["asic-a"] || classWh["ai-inference"] != wantWh["gpu-b"] ||
		classShares["pow-mining"] != wantShares["asic-a"].accepted || classShares["ai-inference"] != wantShares["gpu-b"].accepted {
		t.Errorf("by class: energy %v, shares %v; want the groups' figures under their declared classes", classWh, classShares)
	}

	// Each group's shares committed by a Merkle root, as the PPLNS window builds its
	// own, over the store's accepted shares of the group's worker in the pool period.
	wantLeaves := map[string][]payout.Hash32{}
	sampledShares := 0
	wantBlocks := map[string]int{}
	var foundBlocks []registry.FoundBlock
	for _, sh := range storeShares {
		if sh.Time.Before(poolFrom) || !sh.Time.Before(poolTo) {
			continue
		}
		g := map[string]string{addrA + ".rig-a1": "asic-a", addrB + ".gpu-b1": "gpu-b"}[sh.Address+"."+sh.Worker]
		wantLeaves[g] = append(wantLeaves[g], registry.ShareLeaf(sh))
		if sh.Block {
			wantBlocks[g]++
			foundBlocks = append(foundBlocks, registry.FoundBlock{Height: sh.Height, Hash: chainhash.Hash(sh.Hash).String()})
		}
	}
	for _, gr := range rep.Groups {
		leaves := wantLeaves[gr.Group]
		if len(gr.ShareCommitments) != 1 {
			t.Errorf("group %s: %d share commitments, want 1", gr.Group, len(gr.ShareCommitments))
			continue
		}
		c := gr.ShareCommitments[0]
		if c.Accepted != uint64(len(leaves)) || c.Accepted != wantShares[gr.Group].accepted || c.Root != payout.MerkleRoot(leaves).String() {
			t.Errorf("group %s: committed %d shares, root %s; store lists %d (summaries %d)", gr.Group, c.Accepted, c.Root, len(leaves), wantShares[gr.Group].accepted)
		}
		if len(c.Blocks) != wantBlocks[gr.Group] {
			t.Errorf("group %s: %d blocks found in the commitment, store has %d", gr.Group, len(c.Blocks), wantBlocks[gr.Group])
		}
		// On regtest the pool keeps every header; up to MaxSampleShares/2 shares are
		// all sampled.
		if c.PoolSampleRate != 1 || len(c.Sample) > registry.MaxSampleShares ||
			c.Accepted <= registry.MaxSampleShares/2 && (c.SampleRate != 1 || uint64(len(c.Sample)) != c.Accepted) {
			t.Errorf("group %s: %d of %d shares sampled at rate %d (pool %d); want all of up to %d at 1", gr.Group, len(c.Sample), c.Accepted, c.SampleRate, c.PoolSampleRate, registry.MaxSampleShares/2)
		}
		sampledShares += len(c.Sample)
	}

	// The planted discrepancy: the AI inference group mines, by the pool's shares and by
	// the controller's hashrate; the mining group is not flagged for mining.
	flagged := map[string]bool{}
	for _, f := range rep.Discrepancies {
		flagged[f.Code+" "+f.Group] = true
		if f.Group == "gpu-b" && f.Code == "pow_shares_undeclared" && (f.Severity != registry.SeverityError || len(f.Evidence) == 0 || !strings.Contains(f.Evidence[0], "gpu-b1")) {
			t.Errorf("pow_shares_undeclared for gpu-b without its evidence: %+v", f)
		}
	}
	for _, want := range []string{"pow_shares_undeclared gpu-b", "controller_hashrate_undeclared gpu-b"} {
		if !flagged[want] {
			t.Errorf("not flagged: %s; discrepancies: %+v", want, rep.Discrepancies)
		}
	}
	for _, notWant := range []string{"pow_shares_undeclared asic-a", "controller_hashrate_undeclared asic-a", "pool_share_count_mismatch asic-a", "pool_share_count_mismatch gpu-b"} {
		if flagged[notWant] {
			t.Errorf("flagged %s, which is declared as PoW mining", notWant)
		}
	}

	// Verify passes on the log and the report, and fails after a one-byte change.
	logPath := filepath.Join(regData, registry.LogFile)
	out = mustRun(t, "registry", "verify", "-log="+logPath, "-report="+jsonPath, "-html="+htmlPath, "-pubkey="+pub[1])
	if !strings.Contains(out, "log ok") || !strings.Contains(out, "report ok") || !strings.Contains(out, "in log") {
		t.Errorf("verify: %s", out)
	}
	logBytes, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// One byte of the workload entry of gpu-b: its declared class.
	i := bytes.Index(logBytes, []byte(`"ai-inference"`))
	if i < 0 {
		t.Fatal("log has no ai-inference declaration")
	}
	entry := bytes.Count(logBytes[:i], []byte("\n")) + 1
	tampered := bytes.Clone(logBytes)
	tampered[i+1] = 'A'
	badLog := filepath.Join(dir, "tampered.jsonl")
	if err := os.WriteFile(badLog, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, "registry", "verify", "-log="+badLog)
	var ce *registry.ChainError
	if err == nil || !errors.As(err, &ce) || ce.Line != entry {
		t.Errorf("verify of a log with one byte changed on line %d: got %v, stderr %q; want the entry on that line named", entry, err, stderr)
	}
	// One byte of the report: the last digit of the first energy figure, so the file
	// stays well-formed JSON and only its content changes.
	j := bytes.Index(raw, []byte(`"energy_wh":`))
	if j < 0 {
		t.Fatalf("report file has no energy_wh:\n%.400s", raw)
	}
	k := j + len(`"energy_wh":`)
	for k < len(raw) && (raw[k] < '0' || raw[k] > '9') {
		k++
	}
	for k+1 < len(raw) && raw[k+1] >= '0' && raw[k+1] <= '9' {
		k++
	}
	badRaw := bytes.Clone(raw)
	badRaw[k] = '0' + (badRaw[k]-'0'+1)%10
	badReport := filepath.Join(dir, "tampered-report.json")
	if err := os.WriteFile(badReport, badRaw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runCLI(t, "registry", "verify", "-log="+logPath, "-report="+badReport, "-pubkey="+pub[1]); err == nil {
		t.Errorf("verify of a report with one byte changed passed: %s", stderr)
	}
	if took := time.Since(began); took > 60*time.Second {
		t.Errorf("end-to-end run took %v, bound 60 s", took)
	}
	var codes []string
	for _, f := range rep.Discrepancies {
		codes = append(codes, f.Severity+" "+f.Code+" "+f.Group)
	}
	t.Logf("shares: asic-a %d, gpu-b %d accepted; energy: asic-a %d Wh, gpu-b %d Wh in %d lines; discrepancies: %s; took %v",
		wantShares["asic-a"].accepted, wantShares["gpu-b"].accepted, wantWh["asic-a"], wantWh["gpu-b"], countLines(t, energyPath),
		strings.Join(codes, "; "), time.Since(began).Round(time.Millisecond))

	// Anchored: the log's head in a transaction on the chain, and each rewrite the
	// operator could sign with its own key caught against the node.
	anchorEndToEnd(t, anchorCase{
		blocks: foundBlocks, btcd: btcd, dir: dir, regData: regData, report: jsonPath, badLog: badLog, pub: pub[1],
		replay: func(forged string, src registry.WorkSource) string {
			fd, key := "-data="+forged, "-key="+filepath.Join(regData, "registry.key")
			mustRun(t, "registry", "init", fd, key, "-operator=op1", "-name=West Texas Compute LLC", "-country=US")
			mustRun(t, "registry", "site", "add", fd, key, "-id=west-1", "-operator=op1", "-location=Pecos County, TX", "-grid=Oncor 138 kV", "-capacity-kw=1000")
			mustRun(t, "registry", "device", "add", fd, key, "-id=s19-rack1", "-site=west-1", "-group=asic-a", "-kind=asic", "-model=Antminer S19",
				"-count=2", "-rated-w=3450", "-pool-address="+addrA, "-workers=rig-a*")
			mustRun(t, "registry", "device", "add", fd, key, "-id=gpu-rack1", "-site=west-1", "-group=gpu-b", "-kind=gpu", "-model=8-GPU inference server",
				"-count=2", "-rated-w=3450", "-gpus=8", "-pool-address="+addrB, "-workers=gpu-b*")
			mustRun(t, "registry", "workload", "add", fd, key, "-site=west-1", "-group=asic-a", "-class=pow-mining", declared)
			mustRun(t, "registry", "workload", "add", fd, key, "-site=west-1", "-group=gpu-b", "-class=ai-inference", declared)
			mustRun(t, "registry", "import-energy", fd, key, "-file="+energyPath, "-site=west-1")
			k, err := registry.LoadKey(filepath.Join(regData, "registry.key"))
			if err != nil {
				t.Fatal(err)
			}
			fr, err := registry.Open(registry.Config{Dir: forged, Key: k})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fr.ImportPoolSampled(context.Background(), src, "west-1", poolFrom, poolTo, 1); err != nil {
				t.Fatal(err)
			}
			out := mustRun(t, "registry", "report", fd, key, "-site=west-1", "-from="+from.Format(time.RFC3339), "-to="+to.Format(time.RFC3339), "-out="+filepath.Join(forged, "reports"))
			m := regexp.MustCompile(`(?m)^(\S+\.json)$`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("forged report printed no file name:\n%s", out)
			}
			return m[1]
		},
		store:    dbPath,
		sampled:  sampledShares,
		poolData: poolData,
		startPool: func() (string, func()) {
			// Now with PPLNS books: the coinbase carries the miners' direct credits and
			// the window commitment, which the anchor must leave as they are.
			cfg := poolCfg
			cfg.PayoutScheme, cfg.CoinbaseThreshold, cfg.PayoutThreshold, cfg.PayoutInterval = "pplns", 1, 1_000_000, time.Hour
			r, stop := startPool(t, cfg)
			return r.Stratum, stop
		},
		miner: addrA + ".rig-a1",
	})
}

// anchorCase is what anchorEndToEnd needs from the end-to-end run before it.
type anchorCase struct {
	btcd    *regtest.Node
	dir     string
	regData string
	report  string // the report file
	badLog  string // the log with one byte changed
	pub     string
	store   string                // the pool's SQLite store
	blocks  []registry.FoundBlock // blocks the site's workers found, from the store
	// replay builds the log again in a new directory with the operator's key, the pool
	// evidence taken from pool, and returns the new report file.
	replay  func(dir string, src registry.WorkSource) string
	sampled int // sampled shares in the report
	// startPool starts the pool again on its data directory poolData and returns its
	// Stratum address; miner is the user a miner there mines as.
	poolData  string
	startPool func() (stratum string, stop func())
	miner     string
}

// alteredHeader is the pool's store with one byte changed in every kept header (its
// nonce): the evidence of an operator who swapped shares' headers.
type alteredHeader struct{ *sqlite.DB }

func (a alteredHeader) Shares(ctx context.Context, after, upto uint64, limit int) ([]hashgrid.Share, error) {
	ss, err := a.DB.Shares(ctx, after, upto, limit)
	// Every kept header: the first one in a batch may be a share no device group
	// claims, or one the sample rate leaves out, and then nothing would check it.
	for i := range ss {
		if ss[i].Header != nil {
			h := *ss[i].Header
			h[79] ^= 0x40
			ss[i].Header = &h
		}
	}
	return ss, err
}

// inflated multiplies every worker's accepted shares.
type inflated struct {
	src registry.WorkSource
	k   uint64
}

func (f inflated) WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error) {
	ws, err := f.src.WorkBetween(ctx, from, to)
	for i := range ws {
		ws[i].Accepted *= f.k
	}
	return ws, err
}

func anchorEndToEnd(t *testing.T, c anchorCase) {
	t.Helper()
	ctx := context.Background()
	d := "-data=" + c.regData
	nodeFlag := "-node=" + c.btcd.RPCURL()
	logPath := filepath.Join(c.regData, registry.LogFile)
	// Evidence arriving after the report: the anchor covers it too.
	mustRun(t, "registry", "revenue", "add", d, "-site=west-1", "-group=asic-a", "-from=2026-01-01T00:00:00Z", "-to=2026-01-02T00:00:00Z", "-sat=1200", "-source=payout 1")

	// Fund the anchor from a coinbase of the regtest chain: the block mined at start
	// paid TestAddress; 100 more make it spendable.
	if _, err := c.btcd.Client().Generate(ctx, 100); err != nil {
		t.Fatal(err)
	}
	h1, err := c.btcd.Client().BlockHash(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := fetchBlock(ctx, c.btcd.Client(), h1)
	if err != nil {
		t.Fatal(err)
	}
	utxo := blk.Transactions[0].TxHash().String() + ":0"
	keyFile := filepath.Join(c.dir, "anchor.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(regtest.TestKey().Serialize())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	anchorArgs := []string{"registry", "anchor", d, nodeFlag, "-btc-key=" + keyFile, "-utxo=" + utxo, "-report=" + c.report, "-poll=100ms"}
	// Nothing mines: the run gives up, its transaction in the mempool.
	out, stderr, err := runCLI(t, append(anchorArgs, "-wait=1s")...)
	if err == nil || !strings.Contains(err.Error(), "not mined within") || !strings.Contains(out, "sent ") {
		t.Fatalf("anchor with nothing mining: %v\n%s\n%s", err, out, stderr)
	}
	var mempool []string
	if err := c.btcd.Client().Call(ctx, "getrawmempool", nil, &mempool); err != nil || len(mempool) != 1 {
		t.Fatalf("mempool after the first run: %v, %v", mempool, err)
	}
	sent := out
	// A rerun sends the same transaction again, harmlessly, and waits again.
	out, stderr, err = runCLI(t, append(anchorArgs, "-wait=1s")...)
	if err == nil || !strings.Contains(err.Error(), "not mined within") || !strings.Contains(out, "sent "+mempool[0]) {
		t.Fatalf("anchor rerun with the transaction in the mempool: %v\n%s\n%s", err, out, stderr)
	}
	// Mined before any run recorded it: the next run finds it in the last blocks.
	if _, err := c.btcd.Client().Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = runCLI(t, append(anchorArgs, "-wait=30s")...)
	if err != nil {
		t.Fatalf("registry anchor after its transaction was mined: %v\n%s\n%s", err, out, stderr)
	}
	res := struct{ out string }{out}
	m := regexp.MustCompile(`anchored entry (\d+) in block (\d+) `).FindStringSubmatch(res.out)
	if m == nil {
		t.Fatalf("anchor printed no anchor:\n%s", res.out)
	}
	size := regexp.MustCompile(`\((\d+) bytes, (\d+) vbytes`).FindStringSubmatch(sent)
	t.Logf("anchor: %s", strings.ReplaceAll(strings.TrimSpace(res.out), "\n", "; "))
	// A second run has nothing to anchor, and needs no funding.
	if out := mustRun(t, "registry", "anchor", d, nodeFlag, "-report="+c.report); !strings.Contains(out, "head already anchored: entry "+m[1]) {
		t.Errorf("second anchor run: %s", out)
	}

	// Verify against the node passes.
	out = mustRun(t, "registry", "verify", "-log="+logPath, "-report="+c.report, "-pubkey="+c.pub, nodeFlag)
	// A block can lose a race between the two miners: count what the node says.
	onChain := 0
	for _, b := range c.blocks {
		if h, err := c.btcd.Client().BlockHash(ctx, b.Height); err == nil && h.String() == b.Hash {
			onChain++
		}
	}
	if !strings.Contains(out, fmt.Sprintf("blocks found by the site's groups: %d, on the best chain: %d\n", len(c.blocks), onChain)) {
		t.Errorf("verify against the node did not count the %d blocks found, %d on the best chain: %s", len(c.blocks), onChain, out)
	}
	if !strings.Contains(out, "anchor ok: entries 1.."+m[1]) || !strings.Contains(out, "in block "+m[2]) {
		t.Errorf("verify against the node: %s", out)
	}
	if !strings.Contains(out, fmt.Sprintf("sample ok: %d shares hashed again", c.sampled)) || c.sampled == 0 {
		t.Errorf("verify did not hash the report's %d sampled shares again: %s", c.sampled, out)
	}
	if m := regexp.MustCompile(`sampled shares building on the best chain: (\d+) of (\d+)`).FindStringSubmatch(out); m == nil || m[2] != strconv.Itoa(c.sampled) || m[1] == "0" {
		t.Errorf("verify against the node did not place the sampled shares on the chain: %s", out)
	}
	// The share commitments, recomputed from the pool's store.
	out = mustRun(t, "registry", "verify", "-report="+c.report, "-pubkey="+c.pub, "-shares="+c.store)
	if !strings.Contains(out, "shares ok: 2 share commitments") {
		t.Errorf("verify -shares: %s", out)
	}
	// The same against the anchor's block saved to a file, as from a block explorer.
	var blockHex string
	anchorHeight, _ := strconv.ParseInt(m[2], 10, 64)
	ah, err := c.btcd.Client().BlockHash(ctx, anchorHeight)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.btcd.Client().Call(ctx, "getblock", []any{ah.String(), 0}, &blockHex); err != nil {
		t.Fatal(err)
	}
	chainFile := filepath.Join(c.dir, "chain.json")
	cj, _ := json.Marshal(map[string]any{"blocks": []map[string]any{{"height": anchorHeight, "hex": blockHex}}})
	if err := os.WriteFile(chainFile, cj, 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "registry", "verify", "-log="+logPath, "-report="+c.report, "-pubkey="+c.pub, "-chain="+chainFile)
	if !strings.Contains(out, "anchor ok: entries 1.."+m[1]) || !strings.Contains(out, "(from "+chainFile+")") {
		t.Errorf("verify against a chain file: %s", out)
	}
	// A file whose block at that height is another one (the node's next block).
	nh, err := c.btcd.Client().BlockHash(ctx, anchorHeight-1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.btcd.Client().Call(ctx, "getblock", []any{nh.String(), 0}, &blockHex); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(c.dir, "wrong-chain.json")
	cj, _ = json.Marshal(map[string]any{"blocks": []map[string]any{{"height": anchorHeight, "hex": blockHex}}})
	os.WriteFile(wrong, cj, 0o644)
	if _, _, err := runCLI(t, "registry", "verify", "-log="+logPath, "-report="+c.report, "-pubkey="+c.pub, "-chain="+wrong); err == nil || !strings.Contains(err.Error(), "not on the best chain") {
		t.Errorf("verify against a chain file with another block at the anchor's height: %v", err)
	}
	out = mustRun(t, "registry", "verify", "-log="+logPath, "-pubkey="+c.pub, nodeFlag)
	if !strings.Contains(out, "anchor ok: entries 1.."+m[1]) {
		t.Errorf("verify of the log's anchors: %s", out)
	}
	fails := func(what string, args ...string) string {
		t.Helper()
		_, stderr, err := runCLI(t, append([]string{"registry", "verify", "-report=" + c.report, nodeFlag}, args...)...)
		if err == nil {
			t.Errorf("%s: verify against the node passed", what)
			return ""
		}
		return err.Error() + stderr
	}
	// An entry changed.
	fails("an entry changed", "-log="+c.badLog)
	// Entries removed from the end: the log cut before the anchored head still holds
	// the report and verifies offline.
	logBytes, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(m[1])
	lines := bytes.SplitAfter(logBytes, []byte("\n"))
	short := filepath.Join(c.dir, "short.jsonl")
	if err := os.WriteFile(short, bytes.Join(lines[:n-1], nil), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "registry", "verify", "-log="+short, "-report="+c.report, "-pubkey="+c.pub)
	if msg := fails("entries removed from the end", "-log="+short); !strings.Contains(msg, "removed from the end") {
		t.Errorf("entries removed from the end: %s", msg)
	}
	// The whole log regenerated with the same key, and regenerated with the pool's
	// share counts inflated: each verifies offline with the real anchor attached, and
	// fails against the node.
	store, err := sqlite.OpenReadOnly(c.store)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, k := range []uint64{1, 3} {
		forged := filepath.Join(c.dir, fmt.Sprintf("forged-%d", k))
		rep := c.replay(forged, inflated{store, k})
		mustRun(t, "registry", "revenue", "add", "-data="+forged, "-key="+filepath.Join(c.regData, "registry.key"),
			"-site=west-1", "-group=asic-a", "-from=2026-01-01T00:00:00Z", "-to=2026-01-02T00:00:00Z", "-sat=1200", "-source=payout 1")
		var f registry.ReportFile
		raw, err := os.ReadFile(c.report)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &f); err != nil || f.Anchor == nil {
			t.Fatalf("report file has no anchor: %v", err)
		}
		if err := registry.AttachAnchor(rep, *f.Anchor); err != nil {
			t.Fatal(err)
		}
		forgedLog := "-log=" + filepath.Join(forged, registry.LogFile)
		mustRun(t, "registry", "verify", forgedLog, "-report="+rep, "-pubkey="+c.pub)
		_, stderr, err := runCLI(t, "registry", "verify", forgedLog, "-report="+rep, "-pubkey="+c.pub, nodeFlag)
		if err == nil || !strings.Contains(err.Error(), "regenerated after the anchor") {
			t.Errorf("log regenerated (shares ×%d): verify against the node: %v %s", k, err, stderr)
		}
		if k > 1 {
			var rf registry.ReportFile
			rb, _ := os.ReadFile(rep)
			json.Unmarshal(rb, &rf)
			var fr, orig registry.Report
			json.Unmarshal(rf.Report, &fr)
			json.Unmarshal(f.Report, &orig)
			if fr.Groups[0].Accepted != k*orig.Groups[0].Accepted || fr.Groups[0].Accepted == 0 {
				t.Errorf("forged report: %d accepted shares in %s, original %d; want ×%d", fr.Groups[0].Accepted, fr.Groups[0].Group, orig.Groups[0].Accepted, k)
			}
		}
	}
	// A sampled share's header swapped: the log and report, regenerated and signed
	// with the operator's key, verify offline as signed; the sample does not re-hash.
	forged := filepath.Join(c.dir, "forged-header")
	rep := c.replay(forged, alteredHeader{store})
	_, stderr, err = runCLI(t, "registry", "verify", "-log="+filepath.Join(forged, registry.LogFile), "-report="+rep, "-pubkey="+c.pub)
	var se *registry.SampleError
	if !errors.As(err, &se) || se.Seq == 0 {
		t.Errorf("a sampled share's header altered: verify %v %s; want the share named", err, stderr)
	} else {
		t.Logf("a sampled share's header altered: %v", err)
	}
	if size != nil {
		t.Logf("anchor transaction: %s bytes, %s vbytes; OP_RETURN script %d bytes", size[1], size[2], registry.AnchorScriptSize)
	}
	coinbaseAnchors(t, c)
	funding := regexp.MustCompile(`next funding (\S+)`).FindStringSubmatch(res.out)
	if funding == nil {
		t.Fatalf("the first anchor named no next funding: %s", res.out)
	}
	staleAnchor(t, c, funding[1])
}

// staleAnchor: a transaction anchor that could not be recorded because the log moved
// on while it waited is mined later; the next run finds its funding spent by it and
// goes on from its change instead of stopping.
func staleAnchor(t *testing.T, c anchorCase, funding string) {
	t.Helper()
	ctx := context.Background()
	d := "-data=" + c.regData
	keyFile := filepath.Join(c.dir, "anchor.key")
	args := []string{"registry", "anchor", d, "-node=" + c.btcd.RPCURL(), "-btc-key=" + keyFile, "-utxo=" + funding, "-poll=100ms"}
	revenue := func(n int) {
		mustRun(t, "registry", "revenue", "add", d, "-site=west-1", "-group=asic-a", fmt.Sprintf("-from=2026-02-%02dT00:00:00Z", n),
			fmt.Sprintf("-to=2026-02-%02dT00:00:00Z", n+1), "-sat=1500", fmt.Sprintf("-source=payout s%d", n))
	}
	revenue(1)
	if out, stderr, err := runCLI(t, append(args, "-wait=1s")...); err == nil || !strings.Contains(out, "sent ") {
		t.Fatalf("anchor with nothing mining: %v\n%s\n%s", err, out, stderr)
	}
	revenue(2) // the log moves on; the transaction above anchors entry it left behind
	if _, err := c.btcd.Client().Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out, errb bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, append(args, "-wait=30s"), func(string) string { return "" }, strings.NewReader(""), lockedWriter{&mu, &out}, lockedWriter{&mu, &errb})
	}()
	waitFor(t, 20*time.Second, "the next anchor transaction in the mempool", func() bool {
		var mempool []string
		return c.btcd.Client().Call(ctx, "getrawmempool", nil, &mempool) == nil && len(mempool) == 1
	})
	if _, err := c.btcd.Client().Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	err := <-done
	mu.Lock()
	got := out.String() + errb.String()
	mu.Unlock()
	if err != nil || !strings.Contains(got, "never recorded: funding from its change") || !strings.Contains(got, "anchored entry ") {
		t.Errorf("anchor after an unrecorded one was mined: %v\n%s", err, got)
	}
	t.Logf("after an unrecorded anchor: %s", strings.ReplaceAll(strings.TrimSpace(got), "\n", "; "))
	// The log's anchors, the new one included, hold on the node.
	logPath := filepath.Join(c.regData, registry.LogFile)
	lout := mustRun(t, "registry", "verify", "-log="+logPath, "-pubkey="+c.pub, "-node="+c.btcd.RPCURL())
	if n := strings.Count(lout, "anchor ok:"); n != 4 {
		t.Errorf("verify of the log's anchors after the stale one: %d anchors: %s", n, lout)
	}
}

// coinbaseAnchors runs 'registry anchor -coinbase -every' beside the pool and a miner:
// the pool carries the head in its coinbase, the block is accepted by btcd and
// recorded; a new entry is anchored the same way on the next round; the coinbases pay
// exactly what the pool pays without the commitment; and verify checks the anchor
// against the node.
func coinbaseAnchors(t *testing.T, c anchorCase) {
	t.Helper()
	d := "-data=" + c.regData
	nodeFlag := "-node=" + c.btcd.RPCURL()
	logPath := filepath.Join(c.regData, registry.LogFile)
	mustRun(t, "registry", "revenue", "add", d, "-site=west-1", "-group=asic-a", "-from=2026-01-02T00:00:00Z", "-to=2026-01-03T00:00:00Z", "-sat=1300", "-source=payout 2")
	stratumAddr, stopPool := c.startPool()
	poolStopped := false
	defer func() {
		if !poolStopped {
			stopPool()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var out, errb bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"registry", "anchor", d, nodeFlag, "-coinbase", "-pool-data=" + c.poolData, "-report=" + c.report,
			"-every=200ms", "-poll=100ms", "-wait=60s"}, func(string) string { return "" }, strings.NewReader(""), lockedWriter{&mu, &out}, lockedWriter{&mu, &errb})
	}()
	m, err := miner.New(miner.Config{URL: "stratum+tcp://" + stratumAddr, User: c.miner, MaxRetryWait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(mctx) })
	defer func() { mcancel(); wg.Wait() }()
	anchored := regexp.MustCompile(`anchored entry (\d+) in block (\d+) ([0-9a-f]{64}), coinbase ([0-9a-f]{64}):(\d+); recorded as entry (\d+)`)
	recorded := func(n int) [][]string {
		mu.Lock()
		defer mu.Unlock()
		ms := anchored.FindAllStringSubmatch(out.String(), -1)
		if len(ms) >= n {
			return ms
		}
		return nil
	}
	waitFor(t, 60*time.Second, "the pool's block carrying the head", func() bool { return recorded(1) != nil })
	// A new entry: the next round anchors it.
	mustRun(t, "registry", "revenue", "add", d, "-site=west-1", "-group=asic-a", "-from=2026-01-03T00:00:00Z", "-to=2026-01-04T00:00:00Z", "-sat=1400", "-source=payout 3")
	waitFor(t, 60*time.Second, "the scheduled second coinbase anchor", func() bool { return recorded(2) != nil })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("registry anchor -every: %v", err)
	}
	mcancel()
	wg.Wait()
	stopPool()
	poolStopped = true
	mu.Lock()
	runOut := out.String() + errb.String()
	mu.Unlock()
	ms := recorded(2)
	if _, err := os.Stat(filepath.Join(c.poolData, pool.CommitmentFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the commitment file is still there after its anchor was recorded: %v\n%s", err, runOut)
	}
	bctx := context.Background()
	witness := []byte{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed}
	for k, a := range ms {
		seq, _ := strconv.ParseUint(a[1], 10, 64)
		height, _ := strconv.ParseInt(a[2], 10, 64)
		vout, _ := strconv.Atoi(a[5])
		best, err := c.btcd.Client().BlockHash(bctx, height)
		if err != nil || best.String() != a[3] {
			t.Errorf("anchor block %s at height %d: btcd's best chain holds %s (%v)", a[3], height, best, err)
			continue
		}
		blk, err := fetchBlock(bctx, c.btcd.Client(), best)
		if err != nil {
			t.Fatal(err)
		}
		cb := blk.Transactions[0]
		if vout >= len(cb.TxOut) {
			t.Fatalf("block %d: coinbase has no output %d", height, vout)
		}
		// The pool's layout first, untouched: it pays the whole reward and carries the
		// PPLNS window commitment; then the anchor, of zero value; then, last, the
		// witness commitment.
		var sum, paid int64
		var scripts [][]byte
		for i, o := range cb.TxOut {
			sum += o.Value
			if i < vout {
				paid += o.Value
				scripts = append(scripts, o.PkScript)
			}
		}
		for _, o := range cb.TxOut[vout+1:] {
			if !bytes.HasPrefix(o.PkScript, witness) || o.Value != 0 {
				t.Errorf("block %d: output %d after the anchor: %d sat to %x", height, vout+1, o.Value, o.PkScript)
			}
		}
		if cb.TxOut[vout].Value != 0 || paid != sum || paid == 0 {
			t.Errorf("block %d: the anchor output holds %d sat; the outputs before it pay %d of %d", height, cb.TxOut[vout].Value, paid, sum)
		}
		// The first block after the restart may come before the window holds a share
		// (the pool then keeps the reward); by the second anchor it holds many.
		if _, ok := payout.FindCommitment(scripts); !ok && k == len(ms)-1 {
			t.Errorf("block %d: no PPLNS window commitment before the anchor: %x", height, scripts)
		}
		if h, n, ok := registry.ParseAnchorScript(cb.TxOut[vout].PkScript); !ok || n != seq {
			t.Errorf("block %d: output %d commits to %d %s (%v), want entry %d", height, vout, n, h, ok, seq)
		}
		if w := blk.SerializeSizeStripped()*3 + blk.SerializeSize(); w > 4_000_000 {
			t.Errorf("block %d weighs %d", height, w)
		}
	}
	for _, a := range ms {
		t.Logf("coinbase anchor: %s", a[0])
	}
	// Verify against the node: the report's anchor is now the last coinbase one.
	vo := mustRun(t, "registry", "verify", "-log="+logPath, "-report="+c.report, "-pubkey="+c.pub, nodeFlag)
	last := ms[len(ms)-1]
	if !strings.Contains(vo, "anchor ok: entries 1.."+last[1]) || !strings.Contains(vo, "coinbase "+last[4]+":"+last[5]) {
		t.Errorf("verify of the coinbase anchor against the node: %s", vo)
	}
	// Every anchor of the log, the transaction's and the coinbases', on the node.
	lout := mustRun(t, "registry", "verify", "-log="+logPath, "-pubkey="+c.pub, nodeFlag)
	if n := strings.Count(lout, "anchor ok:"); n != 3 || strings.Count(lout, ", coinbase ") != 2 {
		t.Errorf("verify of the log's anchors: %d anchors: %s", n, lout)
	}
	// A rewrite after the coinbase anchor is caught as after the transaction's.
	logBytes, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(c.dir, "short-cb.jsonl")
	lines := bytes.SplitAfter(logBytes, []byte("\n"))
	n, _ := strconv.Atoi(last[1])
	os.WriteFile(short, bytes.Join(lines[:n-1], nil), 0o644)
	if _, _, err := runCLI(t, "registry", "verify", "-log="+short, "-report="+c.report, "-pubkey="+c.pub, nodeFlag); err == nil || !strings.Contains(err.Error(), "removed from the end") {
		t.Errorf("entries removed from the end of a coinbase-anchored log: %v", err)
	}
}

// countLines returns the number of complete lines in path.
func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// readEnergy decodes every line of an energy.jsonl file.
func readEnergy(t *testing.T, path string) []power.EnergyRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []power.EnergyRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r power.EnergyRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}
