// Package backtest replays a price history through the policy and the reference
// strategies of package power, and reports what each would have earned: revenue,
// energy cost, 4CP charges, profit, hours curtailed and 4CP peaks avoided, each
// strategy's profit as a share of the exact perfect-foresight optimum, an SVG chart of
// price and site load, and optionally the energy evidence lines of the policy.
//
// Stored amounts are integer micro-dollars; the share of the optimum and energy in MWh
// are floats for display.
package backtest

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid/power"
)

// Options says what to produce besides the report.
type Options struct {
	Progress io.Writer // a progress bar is drawn here when not nil
	Energy   io.Writer // the policy's energy.jsonl lines are written here when not nil
}

// StrategyReport is one strategy's result over the whole site.
type StrategyReport struct {
	Name            string      `json:"name"`
	ProfitUSD       json.Number `json:"profit_usd"`
	ShareOfOptimum  float64     `json:"share_of_optimum"`
	ProfitMicro     int64       `json:"profit_micro_usd"`
	RevenueMicro    int64       `json:"revenue_micro_usd"`
	EnergyCostMicro int64       `json:"energy_cost_micro_usd"`
	PeakChargeMicro int64       `json:"fourcp_charge_micro_usd"`
	EnergyWh        int64       `json:"energy_wh"`
	HoursCurtailed  float64     `json:"hours_curtailed"` // machine-weighted
	PeaksAvoided    int         `json:"fourcp_intervals_avoided"`
	Peaks           int         `json:"fourcp_intervals"`

	groups []power.GroupResult
}

// Report is the outcome of a backtest.
type Report struct {
	Site       string           `json:"site"`
	Zone       string           `json:"zone"`
	From       time.Time        `json:"from"`
	To         time.Time        `json:"to"`
	Intervals  int              `json:"intervals"`
	Machines   int              `json:"machines"`
	PeakProxy  bool             `json:"fourcp_peaks_from_price_proxy"`
	Strategies []StrategyReport `json:"strategies"`
	Elapsed    string           `json:"elapsed"`
}

// Strategy returns the named strategy's report, or nil.
func (r *Report) Strategy(name string) *StrategyReport {
	for i := range r.Strategies {
		if r.Strategies[i].Name == name {
			return &r.Strategies[i]
		}
	}
	return nil
}

// Run backtests the policy and the references, then the optimum, over sc.
func Run(sc *power.Scenario, zone string, opt Options) (*Report, error) {
	began := time.Now()
	n := len(sc.Intervals)
	strategies := power.Strategies()
	bar := newProgress(opt.Progress, (len(strategies)+1)*n)
	rep := &Report{Site: sc.Site.Name, Zone: zone, From: sc.Intervals[0].Start, To: sc.Intervals[n-1].End(), Intervals: n, PeakProxy: sc.PeakProxy}
	for _, m := range sc.Models {
		rep.Machines += m.Count
	}
	for k, s := range strategies {
		base := k * n
		res, err := sc.Simulate(s, func(done int) { bar.set(base+done, s.Name()) })
		if err != nil {
			return nil, err
		}
		rep.Strategies = append(rep.Strategies, summarise(sc, s.Name(), res))
	}
	opt2, err := sc.Optimum()
	if err != nil {
		return nil, err
	}
	bar.set((len(strategies)+1)*n, power.NameOptimum)
	bar.done()
	rep.Strategies = append(rep.Strategies, summarise(sc, power.NameOptimum, opt2))
	best := rep.Strategies[len(rep.Strategies)-1].ProfitMicro
	for i := range rep.Strategies {
		if best > 0 {
			rep.Strategies[i].ShareOfOptimum = float64(rep.Strategies[i].ProfitMicro) / float64(best)
		}
	}
	if opt.Energy != nil {
		if err := WriteEnergy(opt.Energy, sc, rep.Strategy(power.NamePolicy).groups); err != nil {
			return nil, err
		}
	}
	rep.Elapsed = time.Since(began).Round(time.Millisecond).String()
	return rep, nil
}

func summarise(sc *power.Scenario, name string, res []power.GroupResult) StrategyReport {
	r := StrategyReport{Name: name, groups: res}
	total := 0
	for _, m := range sc.Models {
		total += m.Count
	}
	for g, gr := range res {
		r.ProfitMicro += int64(gr.Profit())
		r.RevenueMicro += int64(gr.Revenue)
		r.EnergyCostMicro += int64(gr.EnergyCost)
		r.PeakChargeMicro += int64(gr.PeakCharge)
		r.EnergyWh += gr.EnergyWh
		r.HoursCurtailed += float64(gr.OffIntervals) * 0.25 * float64(sc.Models[g].Count) / float64(total)
		r.Peaks = max(r.Peaks, gr.Peaks)
	}
	// A peak counts as avoided when every group was curtailed in it.
	for t := range sc.Intervals {
		if !sc.Peak[t] {
			continue
		}
		all := true
		for _, gr := range res {
			all = all && gr.Path[t] == 0
		}
		if all {
			r.PeaksAvoided++
		}
	}
	r.ProfitUSD = json.Number(power.Micro(r.ProfitMicro).String())
	return r
}

// SiteLoadMW returns the site's average load in each interval of a strategy's run.
func SiteLoadMW(sc *power.Scenario, res []power.GroupResult) []float64 {
	out := make([]float64, len(sc.Intervals))
	for g, gr := range res {
		m := sc.Models[g]
		prev := sc.StartState(g).Mode
		for t, p := range gr.Path {
			out[t] += float64(m.EnergyWh(prev, int(p))) / 250 / 1000 // Wh in 15 min -> kW -> MW
			prev = int(p)
		}
	}
	return out
}

// WriteEnergy writes one energy.jsonl line per group per interval of a run.
func WriteEnergy(w io.Writer, sc *power.Scenario, res []power.GroupResult) error {
	ew := power.NewEnergyWriter(w)
	for t, iv := range sc.Intervals {
		for g, gr := range res {
			m := sc.Models[g]
			prev := sc.StartState(g).Mode
			if t > 0 {
				prev = int(gr.Path[t-1])
			}
			to := int(gr.Path[t])
			on, workload := 0, ""
			if to > 0 {
				on, workload = m.Count, power.WorkloadMining
			}
			rec := power.EnergyRecord{Workload: workload,
				Start: iv.Start, End: iv.End(), Site: sc.Site.Name, Group: m.Name, Mode: m.ModeName(to),
				MachinesOn: on, EnergyWh: m.EnergyWh(prev, to), HashrateGHs: int64(m.THSeconds(prev, to)/900*1000 + 0.5),
			}
			if err := ew.Write(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteText writes the report as a table.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "site %s, zone %s, %s to %s, %d intervals, %d machines\n", r.Site, r.Zone,
		r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.Intervals, r.Machines)
	fmt.Fprintf(&b, "%-11s %15s %15s %13s %15s %9s %10s %8s\n", "strategy", "revenue $", "energy $", "4CP $", "profit $", "of opt", "curtail h", "4CP avd")
	for _, s := range r.Strategies {
		fmt.Fprintf(&b, "%-11s %15s %15s %13s %15s %8.2f%% %10.1f %4d/%d\n", s.Name,
			power.Micro(s.RevenueMicro), power.Micro(s.EnergyCostMicro), power.Micro(s.PeakChargeMicro),
			power.Micro(s.ProfitMicro), 100*s.ShareOfOptimum, s.HoursCurtailed, s.PeaksAvoided, s.Peaks)
	}
	if r.PeakProxy {
		b.WriteString("4CP peaks: no peak intervals configured; the highest-price interval of each June–September watch window stands in.\n")
	}
	fmt.Fprintf(&b, "computed in %s\n", r.Elapsed)
	_, err := io.WriteString(w, b.String())
	return err
}

// progress draws a bar on a terminal stream.
type progress struct {
	w     io.Writer
	total int
	last  int
}

func newProgress(w io.Writer, total int) *progress { return &progress{w: w, total: total, last: -1} }

func (p *progress) set(done int, label string) {
	if p.w == nil || p.total == 0 {
		return
	}
	pct := done * 100 / p.total
	if pct == p.last {
		return
	}
	p.last = pct
	const width = 40
	fill := pct * width / 100
	fmt.Fprintf(p.w, "\r[%s%s] %3d%% %-10s", strings.Repeat("#", fill), strings.Repeat(" ", width-fill), pct, label)
}

func (p *progress) done() {
	if p.w != nil {
		fmt.Fprintln(p.w)
	}
}
