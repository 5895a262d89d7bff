package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/backtest"
	"github.com/hashgrid/hashgrid/power/ercot"
	"github.com/hashgrid/hashgrid/power/minersim"
)

// ercotData holds the real ERCOT prices the repository carries (README.md there).
const ercotData = "../power/backtest/testdata"

func TestPowerBacktestJSON(t *testing.T) {
	prices := filepath.Join(ercotData, "ercot-RTM-2019-02.csv.gz")
	dir := t.TempDir()
	var out, errb bytes.Buffer
	args := []string{"power", "backtest", "--json", "--prices", prices, "--zone", "LZ_WEST/LZEW", "--config", "../examples/site.toml",
		"--chart", filepath.Join(dir, "c.svg"), "--energy-out", dir}
	if err := Run(context.Background(), args, os.Getenv, nil, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep struct {
		Intervals  int `json:"intervals"`
		Strategies []struct {
			Name   string  `json:"name"`
			Profit float64 `json:"profit_usd"`
			Share  float64 `json:"share_of_optimum"`
		} `json:"strategies"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Intervals != 2688 {
		t.Errorf("intervals: got %d, want 2688", rep.Intervals)
	}
	want := []string{"policy", "always_on", "two_strike", "last_price", "optimum"}
	if len(rep.Strategies) != len(want) {
		t.Fatalf("strategies: got %d, want %d", len(rep.Strategies), len(want))
	}
	for i, s := range rep.Strategies {
		if s.Name != want[i] || s.Share > 1 || s.Profit == 0 {
			t.Errorf("strategy %d: got %+v, want %s with a share <= 1", i, s, want[i])
		}
	}
	if rep.Strategies[4].Share != 1 {
		t.Errorf("optimum share: got %v, want 1", rep.Strategies[4].Share)
	}
	for _, f := range []string{"c.svg", "energy.jsonl"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	if errb.Len() != 0 {
		t.Errorf("stderr, not a terminal, got %q", errb.String())
	}
}

func TestPowerUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"power", "backtest"}, os.Getenv, nil, &out, &errb); ExitCode(err) != 2 {
		t.Errorf("missing flags: got %v, want a usage error", err)
	}
	if err := Run(context.Background(), []string{"power", "fly"}, os.Getenv, nil, &out, &errb); ExitCode(err) != 2 {
		t.Errorf("unknown subcommand: got %v, want a usage error", err)
	}
}

// TestPowerBacktestEarlier runs 2019 after 2018's prices (--earlier), as the recorded
// backtests do: the policy's profit must be the backtest package's with the same
// history, differ from a cold start, and a history that does not end where the
// backtest starts is refused.
func TestPowerBacktestEarlier(t *testing.T) {
	y2018, y2019 := filepath.Join(ercotData, "ercot-2018.csv.gz"), filepath.Join(ercotData, "ercot-2019.csv.gz")
	policy := func(extra ...string) (int64, error) {
		args := append([]string{"power", "backtest", "--json", "--quiet", "--prices", y2019, "--zone", "LZ_WEST",
			"--config", "../examples/site.toml", "--efficiency", "21.5"}, extra...)
		var out, errb bytes.Buffer
		if err := Run(context.Background(), args, os.Getenv, nil, &out, &errb); err != nil {
			return 0, fmt.Errorf("%w\n%s", err, errb.String())
		}
		var rep struct {
			Strategies []struct {
				Name   string `json:"name"`
				Profit int64  `json:"profit_micro_usd"`
			} `json:"strategies"`
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return 0, err
		}
		return rep.Strategies[0].Profit, nil
	}
	warm, err := policy("--earlier", y2018)
	if err != nil {
		t.Fatal(err)
	}
	cold, err := policy()
	if err != nil {
		t.Fatal(err)
	}
	// The same run through the backtest package.
	cfg, err := power.LoadConfig("../examples/site.toml")
	if err != nil {
		t.Fatal(err)
	}
	power.SetEfficiency(cfg, 21.5)
	z := power.Zone{Name: "LZ_WEST"}
	before, err := ercot.ReadFile(y2018, z)
	if err != nil {
		t.Fatal(err)
	}
	ivs, err := ercot.ReadFile(y2019, z)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := power.NewScenario(cfg, ivs)
	if err != nil {
		t.Fatal(err)
	}
	sc.Earlier = power.PricesOf(before)
	rep, err := backtest.Run(sc, "LZ_WEST", backtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := rep.Strategy(power.NamePolicy).ProfitMicro; warm != want {
		t.Errorf("--earlier: policy profit %d, the backtest package's with the same history %d", warm, want)
	}
	if warm == cold {
		t.Errorf("--earlier changed nothing: %d both ways", warm)
	}
	t.Logf("policy 2019 LZ_WEST 21.5 J/TH: after 2018 %d µ$, cold %d µ$", warm, cold)
	// 2019 does not end where 2019 starts.
	// named in the files' own (Central) time.
	if _, err := policy("--earlier", y2019); ExitCode(err) != 2 || !strings.Contains(err.Error(), "ends at 2020-01-01 00:00 CST, but --prices starts at 2019-01-01 00:00 CST") {
		t.Errorf("--earlier not ending at the start: got %v, want a usage error in Central time", err)
	}
}

// TestPowerBacktestEconomicsGap: prices of February 2019 against a table whose last
// row is 2018 Q4 are refused, naming the first uncovered date and the last covered
// quarter (they used to be priced silently with 2018 Q4's bitcoin figures);
// --extend-economics runs them on that row and says so.
func TestPowerBacktestEconomicsGap(t *testing.T) {
	site, err := os.ReadFile("../examples/site.toml")
	if err != nil {
		t.Fatal(err)
	}
	later := regexp.MustCompile(`(?m)^\[\[economics\]\]\nfrom = "20(19|2\d)-[^\n]*\n(?:[a-z_]+ = [^\n]*\n)*`)
	cut := later.ReplaceAll(site, nil)
	if n := bytes.Count(cut, []byte("[[economics]]")); n != 4 {
		t.Fatalf("the cut table has %d rows, want 2018's 4", n)
	}
	cfg := filepath.Join(t.TempDir(), "site.toml")
	if err := os.WriteFile(cfg, cut, 0o644); err != nil {
		t.Fatal(err)
	}
	prices := filepath.Join(ercotData, "ercot-RTM-2019-02.csv.gz")
	run := func(extra ...string) (string, string, error) {
		args := append([]string{"power", "backtest", "--json", "--prices", prices, "--zone", "LZ_WEST", "--config", cfg}, extra...)
		var out, errb bytes.Buffer
		err := Run(context.Background(), args, os.Getenv, nil, &out, &errb)
		return out.String(), errb.String(), err
	}
	_, _, err = run()
	if err == nil {
		t.Fatal("a backtest past the [[economics]] table ran")
	}
	for _, w := range []string{"2019-02-01 06:00 UTC", "2018-10-01 (2018 Q4)", "ends on 2018-12-31", "--extend-economics"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	out, stderr, err := run("--extend-economics")
	if err != nil {
		t.Fatalf("--extend-economics: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "priced with the last [[economics]] row (from 2018-10-01), which ends on 2018-12-31") {
		t.Errorf("--extend-economics said nothing of the extension: %q", stderr)
	}
	if !strings.Contains(out, `"intervals": 2688`) {
		t.Errorf("--extend-economics: report %.200s", out)
	}
	// plan refuses and extends alike.
	var pout, perr bytes.Buffer
	if err := Run(context.Background(), []string{"power", "plan", "--prices", prices, "--config", cfg}, os.Getenv, nil, &pout, &perr); err == nil ||
		!strings.Contains(err.Error(), "2019-02-01 06:00 UTC") {
		t.Errorf("plan past the table: got %v", err)
	}
}

// TestPowerRunHashpriceFromNode runs `power run --node` against a real btcd (regtest)
// and an emulated fleet: every decision's hashprice is the node's (its difficulty, the
// 50 BTC subsidy of a regtest height below 150, no fees waiting) at the operator's
// --btc-usd, not the configured [bitcoin] figures.
func TestPowerRunHashpriceFromNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	info, err := btcd.Client().ChainInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := minersim.Start(minersim.Config{Count: 2, Profiles: []minersim.Profile{{Name: "default", THs: 100, Watts: 3450}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site.toml")
	prices, err := filepath.Abs(filepath.Join(ercotData, "ercot-2019.csv.gz"))
	if err != nil {
		t.Fatal(err)
	}
	site := fmt.Sprintf(`name = "t"
zone = "LZ_WEST"
capacity_mw = 1.0
data_dir = %q
[prices]
file = %q
speed = 900.0
poll = "50ms"
[bitcoin]
difficulty = 1.5e14
btc_usd = 90000.0
fees_btc_per_block = 0.02
[[group]]
name = "g"
count = 2
endpoints = [%q, %q]
  [[group.mode]]
  name = "full"
  ths = 100.0
  watts = 3450.0
  profile = "default"
`, dir, prices, fleet.Addrs()[0], fleet.Addrs()[1])
	if err := os.WriteFile(cfg, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err = Run(ctx, []string{"power", "run", "--config", cfg, "--node", btcd.RPCURL(), "--btc-usd", "100000"}, os.Getenv, nil, &out, &errb)
	if ctx.Err() == nil {
		t.Fatalf("power run returned before its context ended: %v\n%s", err, errb.String())
	}
	want := fmt.Sprintf("hashprice %.4f $/TH/day", power.Economics{BTCUSD: 100000, Difficulty: info.Difficulty, SubsidyBTC: 50}.HashpriceUSD(time.Now()))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("no decisions reported\nstderr:\n%s", errb.String())
	}
	for _, l := range lines {
		if strings.Contains(l, "hashprice") && !strings.Contains(l, want) {
			t.Fatalf("decision %q: want %q (the node's figures at --btc-usd)", l, want)
		}
	}
	t.Logf("%d decisions, each at %s", len(lines), want)
}
