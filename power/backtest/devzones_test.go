package backtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/ercot"
)

// devZones are the load zones policy variants are compared on before LZ_WEST, the
// reported zone, is looked at (docs/benchmarks.md).
var devZones = []string{"LZ_AEN", "LZ_CPS", "LZ_HOUSTON", "LZ_LCRA", "LZ_NORTH", "LZ_RAYBN", "LZ_SOUTH"}

// TestDevelopmentZones measures the policy's lead over last_price on the development
// zones, every year and efficiency (63 cells, about four seconds): the comparison
// recorded in docs/benchmarks.md, with the cells won, the worst cell and the total
// lead by which the policy's variants are selected. It runs unless -short (the data
// are in testdata), and checks there what TestYears checks on LZ_WEST
// (checkBar), all but the lead over last_price. Each year is run after the prices of the year before in
// the same zone, as TestYears does (2018 after 2017's, from testdata;
// HASHGRID_DEV_2018_COLD=1 starts 2018 from an empty history, HASHGRID_DEV_COLD=1
// every year). HASHGRID_DEV_MARGIN, HASHGRID_DEV_SPREAD,
// HASHGRID_DEV_HORIZON and HASHGRID_DEV_PRIOR set the policy's margin, spread,
// horizon and prior weight (defaults: the configuration's; margin and spread 0).
func TestDevelopmentZones(t *testing.T) {
	if testing.Short() {
		t.Skip("63 year-long backtests")
	}
	margin := envFloat(t, "HASHGRID_DEV_MARGIN", 0)
	spread := envFloat(t, "HASHGRID_DEV_SPREAD", 0)
	def := exampleConfig(t).Policy
	horizon := envFloat(t, "HASHGRID_DEV_HORIZON", float64(def.Horizon))
	prior := envFloat(t, "HASHGRID_DEV_PRIOR", def.PriorWeight)
	cold := os.Getenv("HASHGRID_DEV_COLD") != ""
	t.Logf("cold start %v, margin %v standard errors, spread %v standard deviations, horizon %v, prior weight %v", cold, *margin, *spread, *horizon, *prior)
	var b strings.Builder
	var total power.Micro
	worst := power.Micro(1 << 62)
	worstCell := ""
	won, cells := 0, 0
	for _, zone := range devZones {
		var zl power.Micro
		zw := 0
		var earlier []power.Price // the year before, published before the year starts
		if !cold && os.Getenv("HASHGRID_DEV_2018_COLD") == "" {
			earlier = year2017(t, zone)
		}
		for _, y := range []string{"2018", "2019", "2020"} {
			ivs, err := ercot.ReadFile(wideYear(y), power.Zone{Name: zone})
			if err != nil {
				t.Fatal(err)
			}
			for _, eff := range []float64{15, 21.5, 34.5} {
				rep := runCell(t, zone, ivs, earlier, eff, func(c *power.Config) {
					c.Policy.Margin, c.Policy.Spread = *margin, *spread
					c.Policy.Horizon, c.Policy.PriorWeight = int(*horizon), *prior
				})
				checkBar(t, fmt.Sprintf("%s %s %v J/TH", zone, y, eff), rep)
				pol := rep.Strategy(power.NamePolicy)
				lead := power.Micro(pol.ProfitMicro - rep.Strategy(power.NameLastPrice).ProfitMicro)
				zl += lead
				cells++
				if lead < worst {
					worst, worstCell = lead, fmt.Sprintf("%s %s %v", zone, y, eff)
				}
				if lead > 0 {
					zw++
					won++
				} else {
					fmt.Fprintf(&b, "  behind last_price: %s %s %v J/TH by %s\n", zone, y, eff, -lead)
				}
			}
			if !cold {
				earlier = power.PricesOf(ivs)
			}
		}
		total += zl
		fmt.Fprintf(&b, "%-10s lead over last_price %12s, ahead in %d of 9\n", zone, zl, zw)
	}
	fmt.Fprintf(&b, "total lead over last_price %s, ahead in %d of %d cells, worst %s (%s)\n", total, won, cells, worst, worstCell)
	t.Log("\n" + b.String())
}

// year2017 returns the 2017 prices of zone (testdata/ercot-2017.csv.gz), the year
// before the first year the policy was developed on.
func year2017(tb testing.TB, zone string) []power.Price {
	tb.Helper()
	ivs, err := ercot.ReadFile(filepath.Join("testdata", "ercot-2017.csv.gz"), power.Zone{Name: zone})
	if err != nil {
		tb.Fatal(err)
	}
	return power.PricesOf(ivs)
}

// envFloat returns the number in the environment variable name, or def if it is unset.
func envFloat(tb testing.TB, name string, def float64) *float64 {
	tb.Helper()
	v, ok := os.LookupEnv(name)
	if !ok {
		return &def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return &f
}
