package backtest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/ercot"
)

// heldOutZones are every load zone of the data: the held-out years score the
// development zones and LZ_WEST alike.
var heldOutZones = append([]string{"LZ_WEST"}, devZones...)

// TestHeldOutYears backtests the shipped policy on 2021 and 2022 (to 15 October, where
// the source ends; testdata), years no policy setting was chosen or looked at on, in
// all eight load zones at 15, 21.5 and 34.5 J/TH: 2021 after the prices of 2020, 2022
// after those of 2021, as TestYears runs its years. It checks the parts of the
// issue's bar that must hold on any year (at least 98% of the optimum; ahead of
// two_strike and always_on; no strategy above the optimum) and logs, per cell, the
// lead over last_price and the cells won, and requires the shipped policy's lead over
// last_price summed over each zone's six cells to be positive (it is in all eight; a
// single cell is lost in 14 of the 48): the figures of docs/benchmarks.md, "held-out
// years". Every one of the 48 cells is checked (about four seconds).
// HASHGRID_DEV_MARGIN and HASHGRID_DEV_SPREAD set the policy's margin and spread as in
// TestDevelopmentZones (default 0, the shipped policy).
func TestHeldOutYears(t *testing.T) {
	if testing.Short() {
		t.Skip("48 year-long backtests")
	}
	margin := envFloat(t, "HASHGRID_DEV_MARGIN", 0)
	spread := envFloat(t, "HASHGRID_DEV_SPREAD", 0)
	t.Logf("margin %v standard errors, spread %v standard deviations", *margin, *spread)
	var b strings.Builder
	won, cells := 0, 0
	var total power.Micro
	worst, worstCell := power.Micro(1<<62), ""
	for _, zone := range heldOutZones {
		prev, err := ercot.ReadFile(wideYear("2020"), power.Zone{Name: zone})
		if err != nil {
			t.Fatal(err)
		}
		earlier := power.PricesOf(prev)
		zw := 0
		var zl power.Micro
		for _, y := range []string{"2021", "2022"} {
			ivs, err := ercot.ReadFile(wideYear(y), power.Zone{Name: zone})
			if err != nil {
				t.Fatal(err)
			}
			for _, eff := range []float64{15, 21.5, 34.5} {
				rep := runCell(t, zone, ivs, earlier, eff, func(c *power.Config) {
					c.Policy.Margin, c.Policy.Spread = *margin, *spread
				})
				cell := fmt.Sprintf("%s %s %v J/TH", zone, y, eff)
				checkBar(t, cell, rep)
				pol, opt := rep.Strategy(power.NamePolicy), rep.Strategy(power.NameOptimum)
				lp, ts := rep.Strategy(power.NameLastPrice), rep.Strategy(power.NameTwoStrike)
				lead := power.Micro(pol.ProfitMicro - lp.ProfitMicro)
				cells++
				zl += lead
				if lead < worst {
					worst, worstCell = lead, cell
				}
				if lead > 0 {
					won++
					zw++
				}
				fmt.Fprintf(&b, "| %s | %s | %.1f | %s | %s | %s | %s | %s | %.2f%% | %.2f%% | %s | %s |\n",
					zone, y, eff, pol.ProfitUSD, rep.Strategy(power.NameAlwaysOn).ProfitUSD, ts.ProfitUSD, lp.ProfitUSD, opt.ProfitUSD,
					100*pol.ShareOfOptimum, 100*lp.ShareOfOptimum, lead, power.Micro(pol.ProfitMicro-ts.ProfitMicro))
			}
			earlier = power.PricesOf(ivs)
		}
		total += zl
		fmt.Fprintf(&b, "%s: lead over last_price %s, ahead in %d of 6\n", zone, zl, zw)
		if *margin == 0 && *spread == 0 && zl <= 0 {
			t.Errorf("%s: the policy's lead over last_price, summed over the six held-out cells, is %s; measured positive in every zone", zone, zl)
		}
	}
	fmt.Fprintf(&b, "held-out years: ahead of last_price in %d of %d cells, worst %s (%s), total lead %s\n", won, cells, worst, worstCell, total)
	t.Log("\n" + b.String())
}
