package power

import (
	"math"
	"time"
)

// Input is everything a strategy may know when deciding one group's state for one
// interval: nothing from that interval's own price or later.
type Input struct {
	Site      *Site
	Model     *Model
	State     State
	Start     time.Time // start of the interval being decided
	History   []Price   // published prices of the intervals before it, oldest first
	Hashprice float64   // $ per TH/s per day, before the pool fee
	Cond      Conditions
	Watch     bool // inside the 4CP watch window
}

// Strategy decides a group's state (0 curtailed, i for mode i) for the next interval.
// Decide must depend only on its input (and on earlier inputs of the same history);
// the caller makes the choice feasible under the constraints.
type Strategy interface {
	Name() string
	Decide(in *Input) int
}

// Strategy names, as reported.
const (
	NamePolicy    = "policy"
	NameAlwaysOn  = "always_on"
	NameTwoStrike = "two_strike"
	NameLastPrice = "last_price"
	NameOptimum   = "optimum"
)

// steady returns the profit of a steady interval in state s at price p.
func (in *Input) steady(s int, p Price) Micro {
	m := in.Model
	return m.Revenue(s, s, in.Hashprice, in.Site.PoolFee) - EnergyCost(p, m.EnergyWh(s, s))
}

// bestAt returns the state with the highest steady profit at price p (off included).
func (in *Input) bestAt(p Price) int {
	best, arg := in.steady(0, p), 0
	for s := 1; s < in.Model.States(); s++ {
		if v := in.steady(s, p); v > best {
			best, arg = v, s
		}
	}
	return arg
}

// Breakeven returns the price at which state s (a mode) earns exactly its power bill.
func (in *Input) Breakeven(s int) Price {
	md := in.Model.Modes[s-1]
	return Price(math.Round(in.Hashprice * md.THs * (1 - in.Site.PoolFee) * 1e6 / (24 * md.Watts) * 100))
}

// AlwaysOn runs every group in its first mode whenever it is allowed to.
type AlwaysOn struct{}

func (AlwaysOn) Name() string         { return NameAlwaysOn }
func (AlwaysOn) Decide(in *Input) int { return 1 }

// LastPrice runs each group in the mode that would have been most profitable at the
// last published price, curtailed if none would: "run in the next interval if the last
// published price was below breakeven".
type LastPrice struct{}

func (LastPrice) Name() string { return NameLastPrice }
func (LastPrice) Decide(in *Input) int {
	if len(in.History) == 0 {
		return in.State.Mode
	}
	return in.bestAt(in.History[len(in.History)-1])
}

// TwoStrike is the commercial rule from energy.md on 15-minute prices: curtail when
// two consecutive prices are at or above the low strike or one is at or above the high
// strike; resume after four consecutive prices below the low strike. The strikes are
// multiples of the first mode's breakeven.
type TwoStrike struct{}

func (TwoStrike) Name() string { return NameTwoStrike }
func (TwoStrike) Decide(in *Input) int {
	h := in.History
	if len(h) == 0 {
		return in.State.Mode
	}
	be := float64(in.Breakeven(1))
	low, high := Price(be*in.Site.TwoLow), Price(be*in.Site.TwoHigh)
	last := h[len(h)-1]
	if in.State.Mode > 0 {
		if last >= high || (last >= low && len(h) >= 2 && h[len(h)-2] >= low) {
			return 0
		}
		return in.State.Mode
	}
	if len(h) < 4 {
		return 0
	}
	for _, p := range h[len(h)-4:] {
		if p >= low {
			return 0
		}
	}
	return 1
}

// Policy is hashgrid's strategy. It starts from the last-price rule's decision (the
// most profitable mode at the last published price, made feasible) and departs from it
// only to run more: to stay on, or in a higher-power mode, when a forecast says the
// coming prices make that pay. A departure that would curtail or step down where the
// last-price rule runs is never taken: betting on a price rise from the history is
// the noisy side of a heavy-tailed market, while a spike's reversion is not.
//
// The forecast is learnt online from the published history alone (see Forecaster).
// Every first decision is valued over a short horizon, with the same constraints and
// ramp costs as the optimum, in two stages: the next interval at the expected next
// price, then the rest of the horizon planned (by the same dynamic programme) once
// that price is published, averaged over the forecaster's distribution of it
// (Forecaster.Next), each outcome with the forecast that would follow it
// (Forecaster.ForecastAfter) and, at or above the shed price, the shed it allows. A
// planner on the expected prices alone, as if they were sure, cannot see what the next
// published price is worth: a running group can react to it at once, a curtailed one
// only after its minimum off time, so after a jump whose next price is cheap as often
// as dear it curtails where staying on pays (TestPolicyValuesTheNextPrice); and it
// sees a switch-on as binding the next interval whatever that price turns out to be,
// while a published price at or above the shed price frees it at once
// (TestPolicySwitchesOnKnowingItCanShed). The departure is the two-stage choice: it
// may keep a group on, raise its mode or switch a curtailed group on.
//
// Optionally (Site.Spread, Site.Margin; both 0 by default, off), a departure must
// also still beat the last-price decision, for the planner on expected prices alone,
// when every forecast price is raised by Spread standard deviations of the price
// change plus Margin standard errors of its mean: a risk-averse operator's knobs, which
// give up expected profit for fewer departures (docs/benchmarks.md). The spread is how
// far one outcome strays from the mean however well the mean is known: a mean that
// says a price above breakeven falls back may average a sure small fall, or falls and
// climbs far above breakeven.
//
// Two safety rules come first: a demand-response event, or a published price at or
// above the shed price at which no mode earns its power bill, curtails at once; in the
// 4CP watch window a price at or above the alert price curtails.
type Policy struct {
	fc       *Forecaster
	planners map[*Model]*planner
	mean     []Price
	se       []float64
	spread   []float64
	shifted  []Price
	val      []int64
	revenue  [][]Micro

	outcomes []Outcome
	after    []Price
	se2, sd2 []float64
	q        []float64
	cval     []int64
}

// NewPolicy returns a policy with an empty forecaster.
func NewPolicy() *Policy { return &Policy{planners: map[*Model]*planner{}} }

func (*Policy) Name() string { return NamePolicy }

// Decide implements Strategy.
func (p *Policy) Decide(in *Input) int {
	h := in.History
	if in.Cond.ForcedOff {
		return 0
	}
	if len(h) == 0 {
		return in.State.Mode
	}
	last := h[len(h)-1]
	if last >= in.Site.ShedPrice && in.bestAt(last) == 0 {
		return 0 // a spike: shed at once, without waiting for the planner
	}
	if in.Watch && in.Site.FourCPRate > 0 && last >= in.Site.AlertPrice {
		return 0
	}
	m := in.Model
	ref := m.Feasible(in.State, in.bestAt(last), in.Cond)
	if !p.canDepart(in, ref) {
		return ref // nothing to weigh (the forecaster catches up on the next call)
	}
	if p.fc == nil || p.fc.horizon != in.Site.Horizon || p.fc.prior != in.Site.Prior {
		p.fc = NewForecaster(in.Site.Horizon, in.Site.Prior)
	}
	p.mean, p.se, p.spread = p.fc.Forecast(h, p.mean[:0], p.se[:0], p.spread[:0])
	pl := p.planners[in.Model]
	if pl == nil {
		pl = newPlanner(in.Model)
		p.planners[in.Model] = pl
	}
	A := m.States()
	if len(p.revenue) != A {
		p.revenue = make([][]Micro, A)
		for i := range p.revenue {
			p.revenue[i] = make([]Micro, A)
		}
		p.val = make([]int64, A)
		p.q = make([]float64, A)
	}
	for f := range A {
		for to := range A {
			p.revenue[f][to] = m.Revenue(f, to, in.Hashprice, in.Site.PoolFee)
		}
	}
	p.twoStage(in, pl)
	dev := ref
	for a := range A {
		if p.val[a] > p.val[dev] {
			dev = a
		}
	}
	if dev == ref || m.EnergyWh(in.State.Mode, dev) <= m.EnergyWh(in.State.Mode, ref) {
		return ref // only departures that run more than the last-price rule
	}
	if in.Site.Margin == 0 && in.Site.Spread == 0 {
		return dev
	}
	// Test the departure against dearer prices than forecast.
	p.shifted = p.shifted[:0]
	for k, mu := range p.mean {
		up := in.Site.Margin*p.se[k] + in.Site.Spread*p.spread[k]
		p.shifted = append(p.shifted, mu+Price(math.Round(up*100)))
	}
	pl.values(in.State, p.revenue, p.shifted, in.Cond, p.val)
	if p.val[dev] > p.val[ref] {
		return dev
	}
	return ref
}

// canDepart reports whether some choice allowed from the group's state runs more than
// ref: the only departures Decide takes.
func (p *Policy) canDepart(in *Input, ref int) bool {
	m := in.Model
	for a := range m.States() {
		if m.Allowed(in.State, a, in.Cond) && m.EnergyWh(in.State.Mode, a) > m.EnergyWh(in.State.Mode, ref) {
			return true
		}
	}
	return false
}

// twoStage sets p.val[a], for every first decision a, to the expected reward of the
// next interval plus the expected value of planning the rest of the horizon once its
// price is published, over the forecaster's distribution of that price.
func (p *Policy) twoStage(in *Input, pl *planner) {
	m := in.Model
	A := m.States()
	p.outcomes = p.fc.Next(p.mean[0], p.outcomes[:0])
	for a := range A {
		p.val[a] = math.MinInt64
		if m.Allowed(in.State, a, in.Cond) {
			p.q[a] = float64(p.revenue[in.State.Mode][a] - EnergyCost(p.mean[0], m.EnergyWh(in.State.Mode, a)))
		}
	}
	if len(p.mean) > 1 {
		if len(p.cval) != A {
			p.cval = make([]int64, A)
		}
		for _, o := range p.outcomes {
			p.after, p.se2, p.sd2 = p.fc.ForecastAfter(o.Price, p.after[:0], p.se2[:0], p.sd2[:0])
			c := Conditions{ShedAllowed: o.Price >= in.Site.ShedPrice}
			for a := range A {
				if !m.Allowed(in.State, a, in.Cond) {
					continue
				}
				pl.values(m.Next(in.State, a), p.revenue, p.after[:len(p.mean)-1], c, p.cval)
				best := int64(math.MinInt64)
				for _, v := range p.cval {
					best = max(best, v)
				}
				p.q[a] += o.Weight * float64(best)
			}
		}
	}
	for a := range A {
		if m.Allowed(in.State, a, in.Cond) {
			p.val[a] = int64(math.Round(p.q[a]))
		}
	}
}

// Strategies returns fresh instances of the policy and the references, in report order.
func Strategies() []Strategy {
	return []Strategy{NewPolicy(), AlwaysOn{}, TwoStrike{}, LastPrice{}}
}
