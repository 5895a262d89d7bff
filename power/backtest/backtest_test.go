package backtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/ercot"
)

func dataDir(tb testing.TB) string {
	tb.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	d := filepath.Join(dir, "..", "shared", "data", "ercot")
	if _, err := os.Stat(d); err != nil {
		tb.Skipf("real ERCOT data not found at %s (../shared/data/ercot from the module root): %v", d, err)
	}
	return d
}

func exampleConfig(tb testing.TB) *power.Config {
	tb.Helper()
	c, err := power.LoadConfig("../../examples/site.toml")
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestYears(t *testing.T) {
	dir := dataDir(t)
	for _, y := range []string{"2018", "2019", "2020"} {
		for _, eff := range []float64{15, 21.5, 34.5} {
			c := exampleConfig(t)
			power.SetEfficiency(c, eff)
			ivs, err := ercot.ReadFile(filepath.Join(dir, y+".csv"), power.Zone{Name: "LZ_WEST"})
			if err != nil {
				t.Fatal(err)
			}
			sc, err := power.NewScenario(c, ivs)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(sc, "LZ_WEST", Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %.1f J/TH", y, eff)
			for _, s := range rep.Strategies {
				t.Logf("  %-10s %14s %.4f", s.Name, s.ProfitUSD, s.ShareOfOptimum)
			}
		}
	}
}
