package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
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
