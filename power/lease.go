package power

import (
	"math"
	"time"
)

// Leased is the mode name recorded for a group whose machines lease compute.
const Leased = "leased"

// Workloads an energy record says the energy went to.
const (
	WorkloadMining  = "mining"
	WorkloadCompute = "compute"
)

// LeaseMarket is what a compute market shows about leasing one group's machines,
// read by the live controller before each decision:
//
//   - ChargedSat and HeldCoreMS sum the leases of the group's providers created within
//     the window ([group.compute] window): what tenants were charged for them (sat,
//     before the market's fee) and the cores they held times their metered wall time
//     (core-milliseconds, GET /api/v1/compute/providers/{id}: charged, cores, wall_ms).
//   - FloorSat is the providers' price floor, sat per core-hour: the rate assumed when
//     none of their leases ran in the window.
//   - BusyCores and OfferedCores are the market's occupancy now, over every offer it
//     shows (GET /api/v1/compute/offers: resources.cores − free.cores, resources.cores).
//     A paused provider is offered to nobody, so a group that mines is not counted,
//     and one that leases is (its idle cores lower the occupancy it is judged by).
type LeaseMarket struct {
	ChargedSat   int64
	HeldCoreMS   int64
	FloorSat     int64
	BusyCores    int64
	OfferedCores int64
}

// LeaseQuote is the leased-compute alternative of one group for one interval.
type LeaseQuote struct {
	RatePerCoreHour float64 // sat per leased core-hour, after the market's fee
	Occupancy       float64 // share of the market's offered cores leased, 0..1
	SatPerHour      float64 // expected earnings of the group, sat per hour
	Revenue         Micro   // expected earnings of the group in one interval, at the BTC price
	EnergyWh        int64   // the group's draw in one interval while leased work runs
}

// QuoteLease prices leasing a group of count machines for one interval:
//
//	rate        = ChargedSat · 3,600,000 / HeldCoreMS      sat per leased core-hour
//	              (FloorSat when HeldCoreMS is 0)
//	net rate    = rate · (10,000 − fee_bps) / 10,000
//	occupancy   = BusyCores / OfferedCores                  (0 with no offers)
//	sat/h       = net rate · occupancy · count · cores
//	revenue     = sat/h · ¼ h · btcUSD / 10⁸                US dollars, rounded once to µ$
//	energy      = count · watts · ¼ h                       Wh, rounded
//
// The providers' own recent rate says what a core of theirs earns while it is leased;
// the market's occupancy says how much of the time an offered core is leased. Like the
// hashprice, the rates are floats and the interval's revenue is rounded to Micro once.
func QuoteLease(cc *ComputeConfig, count int, m LeaseMarket, btcUSD float64) LeaseQuote {
	var q LeaseQuote
	rate := float64(m.FloorSat)
	if m.HeldCoreMS > 0 {
		rate = float64(m.ChargedSat) * float64(time.Hour/time.Millisecond) / float64(m.HeldCoreMS)
	}
	q.RatePerCoreHour = rate * float64(10_000-cc.FeeBps) / 10_000
	if m.OfferedCores > 0 {
		q.Occupancy = math.Min(math.Max(float64(m.BusyCores)/float64(m.OfferedCores), 0), 1)
	}
	q.SatPerHour = q.RatePerCoreHour * q.Occupancy * float64(count*cc.Cores)
	q.Revenue = MicroFromDollars(q.SatPerHour * IntervalLength.Hours() * btcUSD / 1e8)
	q.EnergyWh = LeaseEnergyWh(cc, count)
	return q
}

// LeaseEnergyWh is the energy of count machines running leased work for one interval.
func LeaseEnergyWh(cc *ComputeConfig, count int) int64 {
	return int64(math.Round(float64(count) * cc.Watts * IntervalLength.Hours()))
}

// ChooseLease decides whether a group that can lease compute leases it in the next
// interval, given mine, the state the group's strategy chose (made feasible), and
// whether it leases now. Leasing is a state of the group's machines that is curtailed
// for mining, so the mining model's constraints apply to it: leaving a mining mode
// for leasing needs the group's minimum on time served (or a shed), and going back to
// mining its minimum off time (which the strategy's feasible choice already honours).
//
// The choice at the last published price p:
//
//	mining      the strategy's state: its steady revenue − energy cost at p
//	leasing     q.Revenue − cost of q.EnergyWh at p
//	curtailed   − cost of the sleep draw at p
//
// It leases when leasing earns strictly more than both. The safe rules come first:
// a demand-response event or a stale feed (Cond.ForcedOff) never leases; in the 4CP
// watch window a price at or above the alert price does not; with no price yet the
// group stays as it is. A spike sheds leasing as it sheds mining: at a price at or
// above the shed price leasing is taken only while it still earns more than it costs.
func ChooseLease(in *Input, mine int, leasing bool, q LeaseQuote) bool {
	if in.Cond.ForcedOff {
		return false
	}
	h := in.History
	if len(h) == 0 {
		return leasing
	}
	last := h[len(h)-1]
	if in.Watch && in.Site.FourCPRate > 0 && last >= in.Site.AlertPrice {
		return false
	}
	if in.State.Mode > 0 && !in.Model.Allowed(in.State, 0, in.Cond) {
		return false // the miners must stay on for their minimum on time
	}
	lease := in.LeaseProfit(q, last)
	return lease > in.steady(mine, last) && lease > in.steady(0, last)
}

// LeaseProfit is what leasing earns in a steady interval at price p: the quote's
// revenue less the cost of its energy.
func (in *Input) LeaseProfit(q LeaseQuote, p Price) Micro {
	return q.Revenue - EnergyCost(p, q.EnergyWh)
}

// SteadyProfit is what state s (0 curtailed) earns in a steady interval at price p.
func (in *Input) SteadyProfit(s int, p Price) Micro { return in.steady(s, p) }
