package power

import (
	"fmt"
	"math"
	"time"
)

// Site holds the site-wide parameters a strategy may read.
type Site struct {
	Name       string
	PoolFee    float64
	ShedPrice  Price
	AlertPrice Price // 4CP alert: curtail in the watch window at or above this
	FourCPRate Micro // transmission charge per kW-year of peak load
	TwoLow     float64
	TwoHigh    float64
	Horizon    int
	Prior      float64
	Margin     float64 // standard errors a departure from the last-price rule must survive
	Spread     float64 // standard deviations of the price change it must survive
}

// NewSite extracts the site-wide parameters from a validated configuration.
func NewSite(c *Config) Site {
	return Site{
		Name:       c.Name,
		PoolFee:    c.PoolFee,
		ShedPrice:  Price(math.Round(c.ShedPrice * 100)),
		AlertPrice: Price(math.Round(c.FourCP.AlertPrice * 100)),
		FourCPRate: MicroFromDollars(c.FourCP.USDPerKWYear),
		TwoLow:     c.TwoStrike.Low,
		TwoHigh:    c.TwoStrike.High,
		Horizon:    c.Policy.Horizon,
		Prior:      c.Policy.PriorWeight,
		Margin:     c.Policy.Margin,
		Spread:     c.Policy.Spread,
	}
}

// PeakCharge returns the 4CP charge for using wh in a peak interval: the yearly rate
// applies to the mean of four peaks, so one peak interval costs rate/4 per kW of its
// average load (kW = Wh/250 over 15 minutes), i.e. rate·Wh/1000.
func (s Site) PeakCharge(wh int64) Micro { return Micro(int64(s.FourCPRate) * wh / 1000) }

// Scenario is a price history with everything known about each interval: what the
// strategies may learn as it is published, and what only the optimum sees in advance.
type Scenario struct {
	Site      Site
	Models    []*Model
	Intervals []Interval
	Prices    []Price   // Intervals[i].Price, contiguous for History slices
	Hashprice []float64 // $ per TH/s per day at each interval, before the pool fee
	Forced    []bool    // a demand-response event covers the interval
	Watch     []bool    // in the 4CP watch window (June–September weekdays)
	Peak      []bool    // a 4CP peak interval
	PeakProxy bool      // Peak was derived from prices, not configured
	// Earlier holds prices published before the first interval, oldest first: what the
	// strategies have seen before the scenario starts (History begins with them). It
	// is not accounted.
	Earlier []Price
}

// NewScenario prepares a backtest of the site in c over the intervals ivs.
func NewScenario(c *Config, ivs []Interval) (*Scenario, error) {
	if len(ivs) == 0 {
		return nil, fmt.Errorf("scenario: no prices")
	}
	sc := &Scenario{Site: NewSite(c), Intervals: ivs}
	for _, g := range c.Groups {
		m, err := NewModel(g)
		if err != nil {
			return nil, fmt.Errorf("scenario: %w", err)
		}
		sc.Models = append(sc.Models, m)
	}
	n := len(ivs)
	sc.Prices = make([]Price, n)
	sc.Hashprice = make([]float64, n)
	sc.Forced = make([]bool, n)
	sc.Watch = make([]bool, n)
	sc.Peak = make([]bool, n)
	peaks := map[time.Time]bool{}
	for _, p := range c.FourCP.Intervals {
		peaks[p.UTC().Truncate(IntervalLength)] = true
	}
	for i, iv := range ivs {
		sc.Prices[i] = iv.Price
		e, err := c.EconomicsAt(iv.Start)
		if err != nil {
			return nil, fmt.Errorf("scenario: %w", err)
		}
		if !(e.Difficulty > 0) || !(e.BTCUSD > 0) {
			return nil, fmt.Errorf("scenario: no economics (btc_usd, difficulty) for %s", iv.Start.Format(time.RFC3339))
		}
		sc.Hashprice[i] = e.HashpriceUSD(iv.Start)
		for _, ev := range c.DemandResponse.Events {
			end := ev.Start.Add(time.Duration(ev.Minutes) * time.Minute)
			if iv.Start.Before(end) && iv.End().After(ev.Start) {
				sc.Forced[i] = true
			}
		}
		lt := InCentral(iv.Start)
		sc.Watch[i] = lt.Month() >= time.June && lt.Month() <= time.September &&
			lt.Weekday() != time.Saturday && lt.Weekday() != time.Sunday &&
			lt.Hour() >= c.FourCP.WindowStartHour && lt.Hour() < c.FourCP.WindowEndHour
		sc.Peak[i] = peaks[iv.Start]
	}
	if len(c.FourCP.Intervals) == 0 {
		sc.markPeakProxy()
	}
	return sc, nil
}

// markPeakProxy marks, for each June–September month, the watch-window interval with
// the highest price: a stand-in for the system-load peak, which the price files lack.
func (sc *Scenario) markPeakProxy() {
	sc.PeakProxy = true
	best := map[string]int{}
	for i, iv := range sc.Intervals {
		if !sc.Watch[i] {
			continue
		}
		k := InCentral(iv.Start).Format("2006-01")
		if j, ok := best[k]; !ok || sc.Prices[i] > sc.Prices[j] {
			best[k] = i
		}
	}
	for _, i := range best {
		sc.Peak[i] = true
	}
}

// Conditions returns the published conditions of interval t.
func (sc *Scenario) Conditions(t int) Conditions {
	return Conditions{ForcedOff: sc.Forced[t], ShedAllowed: t > 0 && sc.Prices[t-1] >= sc.Site.ShedPrice}
}

// Reward returns the profit of group g in interval t when it moves from one state to
// another: revenue minus energy cost minus any 4CP charge.
func (sc *Scenario) Reward(g, t, from, to int) Micro {
	m := sc.Models[g]
	wh := m.EnergyWh(from, to)
	r := m.Revenue(from, to, sc.Hashprice[t], sc.Site.PoolFee) - EnergyCost(sc.Prices[t], wh)
	if sc.Peak[t] {
		r -= sc.Site.PeakCharge(wh)
	}
	return r
}

// StartState is where every group stands before the first interval: on in its first
// mode, free to switch.
func (sc *Scenario) StartState(g int) State { return State{Mode: 1, Dwell: sc.Models[g].Dwell} }

// GroupResult is what one group did over the scenario.
type GroupResult struct {
	Revenue      Micro
	EnergyCost   Micro
	PeakCharge   Micro
	EnergyWh     int64
	THSeconds    float64
	OffIntervals int // intervals spent curtailed
	Peaks        int
	PeaksAvoided int     // peak intervals spent curtailed
	Path         []uint8 // the state of each interval
}

// Profit is revenue minus energy cost minus 4CP charges.
func (r GroupResult) Profit() Micro { return r.Revenue - r.EnergyCost - r.PeakCharge }

// Evaluate accounts a path of states for group g. It checks the path against the
// constraints and refuses a path that breaks them.
func (sc *Scenario) Evaluate(g int, path []uint8) (GroupResult, error) {
	m := sc.Models[g]
	if len(path) != len(sc.Intervals) {
		return GroupResult{}, fmt.Errorf("evaluate %s: path of %d intervals, want %d", m.Name, len(path), len(sc.Intervals))
	}
	res := GroupResult{Path: path}
	st := sc.StartState(g)
	for t, p := range path {
		to := int(p)
		if to >= m.States() || !m.Allowed(st, to, sc.Conditions(t)) {
			return GroupResult{}, fmt.Errorf("evaluate %s: interval %d: %s to %s not allowed", m.Name, t, m.ModeName(st.Mode), m.ModeName(min(to, m.States()-1)))
		}
		wh := m.EnergyWh(st.Mode, to)
		res.Revenue += m.Revenue(st.Mode, to, sc.Hashprice[t], sc.Site.PoolFee)
		res.EnergyCost += EnergyCost(sc.Prices[t], wh)
		res.EnergyWh += wh
		res.THSeconds += m.THSeconds(st.Mode, to)
		if sc.Peak[t] {
			res.Peaks++
			res.PeakCharge += sc.Site.PeakCharge(wh)
			if to == 0 {
				res.PeaksAvoided++
			}
		}
		if to == 0 {
			res.OffIntervals++
		}
		st = m.Next(st, to)
	}
	return res, nil
}

// Simulate runs strategy s over the scenario, one decision per group per interval, each
// seeing only the prices published before its interval. progress, if not nil, is called
// with the number of intervals done.
func (sc *Scenario) Simulate(s Strategy, progress func(done int)) ([]GroupResult, error) {
	n := len(sc.Intervals)
	paths := make([][]uint8, len(sc.Models))
	states := make([]State, len(sc.Models))
	for g := range sc.Models {
		paths[g] = make([]uint8, n)
		states[g] = sc.StartState(g)
	}
	hist := append(append(make([]Price, 0, len(sc.Earlier)+n), sc.Earlier...), sc.Prices...)
	for t := range n {
		cond := sc.Conditions(t)
		e := len(sc.Earlier) + t
		for g, m := range sc.Models {
			in := Input{
				Site: &sc.Site, Model: m, State: states[g], Start: sc.Intervals[t].Start,
				History: hist[:e:e], Hashprice: sc.Hashprice[t], Cond: cond, Watch: sc.Watch[t],
			}
			to := m.Feasible(states[g], s.Decide(&in), cond)
			paths[g][t] = uint8(to)
			states[g] = m.Next(states[g], to)
		}
		if progress != nil && (t%1024 == 0 || t == n-1) {
			progress(t + 1)
		}
	}
	out := make([]GroupResult, len(sc.Models))
	for g := range sc.Models {
		r, err := sc.Evaluate(g, paths[g])
		if err != nil {
			return nil, fmt.Errorf("simulate %s: %w", s.Name(), err)
		}
		out[g] = r
	}
	return out, nil
}

// Optimum returns the perfect-foresight path of every group under the same
// constraints, and its accounting. It is exact: the rewards are integers and the
// dynamic programme covers every (mode, dwell) state.
func (sc *Scenario) Optimum() ([]GroupResult, error) {
	out := make([]GroupResult, len(sc.Models))
	for g, m := range sc.Models {
		n := len(sc.Intervals)
		reward := func(t, from, to int) int64 { return int64(sc.Reward(g, t, from, to)) }
		path, want := m.solve(sc.StartState(g), n, reward, sc.Conditions)
		r, err := sc.Evaluate(g, path)
		if err != nil {
			return nil, fmt.Errorf("optimum: %w", err)
		}
		if int64(r.Profit()) != want {
			return nil, fmt.Errorf("optimum %s: accounting %d µ$ differs from the programme's %d µ$", m.Name, r.Profit(), want)
		}
		out[g] = r
	}
	return out, nil
}
