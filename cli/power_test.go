package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/backtest"
	"github.com/hashgrid/hashgrid/power/ercot"
)

func TestPowerBacktestJSON(t *testing.T) {
	prices, err := filepath.Abs("../../shared/data/ercot/raw/RTM-2019-02.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(prices); err != nil {
		t.Skipf("real ERCOT data not found at %s: %v", prices, err)
	}
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
	if !bytes.Contains(errb.Bytes(), []byte("100%")) {
		t.Errorf("no progress bar on stderr")
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
	dir, err := filepath.Abs("../../shared/data/ercot")
	if err != nil {
		t.Fatal(err)
	}
	y2018, y2019 := filepath.Join(dir, "2018.csv"), filepath.Join(dir, "2019.csv")
	if _, err := os.Stat(y2019); err != nil {
		t.Skipf("real ERCOT data not found at %s: %v", dir, err)
	}
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
	if _, err := policy("--earlier", y2019); ExitCode(err) != 2 {
		t.Errorf("--earlier not ending at the start: got %v, want a usage error", err)
	}
}
