// Package controller is the live loop of hashgrid power: it follows a price feed,
// decides each group's state for every interval with the same Strategy code the
// backtest runs, commands the machines over their API, reads back that they obeyed,
// retries with backoff, and reports the machines that did not.
//
// Ramps up and ordinary ramps down are staggered by group batches (stagger_batch
// machines, then stagger_every). A shed — a spike at which no mode pays, a
// demand-response event, or a stale feed — is commanded to every machine at once, and
// its duration (decision to every obeying machine reporting curtailed) is measured.
//
// The safe rule for a gap in a live feed: when no new price has been published for
// stale_after, every group is curtailed until a fresh price arrives; the history then
// restarts at the first price after the gap.
//
// The hashprice a decision weighs is live: difficulty, subsidy and fees from a node
// (Options.Chain; NodeChain reads the pool's own node), the BTC price from the
// operator (a configured price or a price URL). The [[economics]] table of a site is
// for backtests only.
//
// Energy records are the commanded state's modelled energy (power.Model) for the
// interval, with machines_on counting the machines that were verified in that state.
//
// A group with a [group.compute] table can also lease compute (lease.go): every
// decision reads its providers' recent leases and the market's offers, prices leasing
// (power.QuoteLease) and weighs it against the strategy's mining choice and curtailing
// (power.ChooseLease). Its energy records then say "leased" and workload "compute".
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/control"
)

// BTCPriceSource gives the BTC price in US dollars.
type BTCPriceSource interface {
	BTCUSD(ctx context.Context) (float64, error)
}

// Feed publishes prices.
type Feed interface {
	// Published returns the intervals published by market time now, oldest first.
	Published(ctx context.Context, now time.Time) ([]power.Interval, error)
	// MarketTime maps a wall-clock time to market time (a replay runs faster).
	MarketTime(wall time.Time) time.Time
}

// Miner is a machine the controller commands (control.Client is one).
type Miner interface {
	Curtail(ctx context.Context) error
	Wake(ctx context.Context) error
	SetProfile(ctx context.Context, profile string) error
	Status(ctx context.Context) (control.Status, error)
}

// Options configures a controller.
type Options struct {
	Config *power.Config
	Feed   Feed
	// Chain gives the difficulty, subsidy and fees (NodeChain: the pool's own node);
	// nil: the configured [bitcoin] difficulty and fees, the subsidy by date.
	Chain    ChainSource
	BTCPrice BTCPriceSource // nil: the configured BTC price
	Miners   [][]Miner      // per group; nil: clients for the configured endpoints
	Strategy power.Strategy // nil: the policy
	// Providers are, per group, the provider agents of a group that can lease compute
	// (nil for the others); nil: control clients of the configured controls.
	Providers [][]Provider
	// Offers reads the compute market's offers, per group (nil for the others); nil:
	// a client of the configured market.
	Offers []OfferSource
	Clock  func() time.Time
	Logger *slog.Logger
	Energy io.Writer // energy.jsonl lines
	Report io.Writer // one line per decision and per disobedient machine
}

// Controller runs one site.
type Controller struct {
	o       Options
	cfg     *power.Config
	site    power.Site
	models  []*power.Model
	miners  [][]Miner
	log     *slog.Logger
	energy  *power.EnergyWriter
	history []power.Interval
	prices  []power.Price
	states  []power.State
	// what was commanded for the interval being run, for its energy record
	current *decided
	stale   bool
	// chain is the last figures the chain source gave, used while it fails.
	chain *Chain
	// Per group: the provider agents and the market's offers of a group that can
	// lease compute (nil for the others), and whether it leases now.
	providers [][]Provider
	offers    []OfferSource
	leasing   []bool
}

type decided struct {
	start time.Time
	from  []int
	to    []int
	on    []int
	lease []bool
}

// Failure is a machine that did not obey.
type Failure struct {
	Group   string
	Machine int // index in the group
	Want    string
	Err     error
}

func (f Failure) String() string {
	return fmt.Sprintf("group %s machine %d did not obey %s: %v", f.Group, f.Machine, f.Want, f.Err)
}

// GroupDecision is what the controller did to one group.
type GroupDecision struct {
	Group  string
	Mode   string // a mining mode, "curtailed" or "leased"
	Reason string
	On     int // machines verified running (or, for curtailed, the machines still running)
	// Lease is what leasing compute was expected to earn, for a group that can lease
	// and whose market could be read.
	Lease *power.LeaseQuote
}

// Step is the outcome of one decision.
type Step struct {
	Interval  time.Time // market start of the interval decided
	Price     power.Price
	Hashprice float64
	Groups    []GroupDecision
	Failures  []Failure
	Shed      bool
	Took      time.Duration // from decision to every command verified (or given up)
}

// New checks the options and builds the controller.
func New(o Options) (*Controller, error) {
	if o.Config == nil || o.Feed == nil {
		return nil, errors.New("controller: config and feed required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Strategy == nil {
		o.Strategy = power.NewPolicy()
	}
	if o.Report == nil {
		o.Report = io.Discard
	}
	c := &Controller{o: o, cfg: o.Config, site: power.NewSite(o.Config), log: o.Logger.With("subsystem", "power")}
	if o.Energy != nil {
		c.energy = power.NewEnergyWriter(o.Energy)
	}
	for gi, g := range o.Config.Groups {
		m, err := power.NewModel(g)
		if err != nil {
			return nil, fmt.Errorf("controller: %w", err)
		}
		c.models = append(c.models, m)
		c.states = append(c.states, power.State{Mode: 1, Dwell: m.Dwell})
		var ms []Miner
		if o.Miners != nil {
			if gi >= len(o.Miners) || len(o.Miners[gi]) != g.Count {
				return nil, fmt.Errorf("controller: group %s: %d machines given, want %d", g.Name, len(o.Miners[min(gi, len(o.Miners)-1)]), g.Count)
			}
			ms = o.Miners[gi]
		} else {
			if len(g.Endpoints) != g.Count {
				return nil, fmt.Errorf("controller: group %s: endpoints required, one per machine, to run live", g.Name)
			}
			for _, ep := range g.Endpoints {
				cl, err := control.NewClient(ep, g.Protocol, o.Config.Control.Timeout.Duration)
				if err != nil {
					return nil, fmt.Errorf("controller: group %s: %w", g.Name, err)
				}
				ms = append(ms, cl)
			}
		}
		c.miners = append(c.miners, ms)
		if err := c.addCompute(gi, g); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run steps every poll period of wall-clock time until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	tick := time.NewTicker(c.cfg.Prices.Poll.Duration)
	defer tick.Stop()
	for {
		if _, err := c.Step(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.log.Warn("step", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Step reads the feed and, when a new price is published (or the feed went stale),
// decides and commands every group. It returns nil when there was nothing to decide.
func (c *Controller) Step(ctx context.Context) (*Step, error) {
	now := c.o.Feed.MarketTime(c.o.Clock())
	ivs, err := c.o.Feed.Published(ctx, now)
	if err != nil {
		c.log.Warn("price feed", "err", err)
	}
	fresh := c.merge(ivs)
	stale := len(c.history) == 0 || now.Sub(c.history[len(c.history)-1].End()) > c.cfg.StaleAfter.Duration
	if !fresh && !(stale && !c.stale) {
		return nil, nil
	}
	c.stale = stale
	return c.decide(ctx, now, stale)
}

// merge appends newly published intervals; after a gap the history restarts.
func (c *Controller) merge(ivs []power.Interval) bool {
	fresh := false
	for _, iv := range ivs {
		if n := len(c.history); n > 0 {
			last := c.history[n-1].Start
			if !iv.Start.After(last) {
				continue
			}
			if !iv.Start.Equal(last.Add(power.IntervalLength)) {
				// In US Central time, the market's and the price files' own.
				c.log.Warn("price feed gap: history restarts", "after", power.InCentral(last), "next", power.InCentral(iv.Start))
				c.history, c.prices = c.history[:0], c.prices[:0]
			}
		}
		c.history = append(c.history, iv)
		c.prices = append(c.prices, iv.Price)
		fresh = true
	}
	return fresh
}

// economics returns what mining earns now: the chain's figures from the chain source
// (the last it gave while it fails, the configured ones before it ever answered) and
// the BTC price from the price source or the configuration.
func (c *Controller) economics(ctx context.Context) power.Economics {
	e := power.Economics{PoolFee: c.cfg.PoolFee, BTCUSD: c.cfg.Bitcoin.BTCUSD, Difficulty: c.cfg.Bitcoin.Difficulty, FeesBTCPerBlock: c.cfg.Bitcoin.FeesBTCPerBlock}
	if c.o.Chain != nil {
		ch, err := c.o.Chain.Chain(ctx)
		switch {
		case err == nil:
			c.chain = &ch
			c.log.Debug("chain", "network", ch.Network, "height", ch.Height, "difficulty", ch.Difficulty, "subsidy_sat", ch.SubsidySats, "fees_sat", ch.FeesSats)
		case c.chain != nil:
			c.log.Warn("chain from node; using the last figures it gave", "height", c.chain.Height, "err", err)
		default:
			c.log.Warn("chain from node; using the configured difficulty and fees", "err", err)
		}
		if c.chain != nil {
			e.Difficulty = c.chain.Difficulty
			e.SubsidyBTC = float64(c.chain.SubsidySats) / 1e8
			e.FeesBTCPerBlock = float64(c.chain.FeesSats) / 1e8
		}
	}
	if c.o.BTCPrice != nil {
		if p, err := c.o.BTCPrice.BTCUSD(ctx); err == nil && p > 0 {
			e.BTCUSD = p
		} else {
			c.log.Warn("btc price feed; using the configured value", "err", err)
		}
	}
	return e
}

func (c *Controller) decide(ctx context.Context, now time.Time, stale bool) (*Step, error) {
	began := c.o.Clock()
	step := &Step{}
	var last power.Interval
	start := now.Truncate(power.IntervalLength)
	if len(c.history) > 0 {
		last = c.history[len(c.history)-1]
		if !stale {
			start = last.End()
		}
	}
	step.Interval, step.Price = start, last.Price
	econ := c.economics(ctx)
	hp := econ.HashpriceUSD(now)
	step.Hashprice = hp
	forced := false
	for _, ev := range c.cfg.DemandResponse.Events {
		if !now.Before(ev.Start) && now.Before(ev.Start.Add(time.Duration(ev.Minutes)*time.Minute)) {
			forced = true
		}
	}
	cond := power.Conditions{ForcedOff: forced || stale, ShedAllowed: len(c.history) > 0 && last.Price >= c.site.ShedPrice}
	lt := power.InCentral(start)
	watch := lt.Month() >= time.June && lt.Month() <= time.September && lt.Weekday() != time.Saturday && lt.Weekday() != time.Sunday &&
		lt.Hour() >= c.cfg.FourCP.WindowStartHour && lt.Hour() < c.cfg.FourCP.WindowEndHour

	c.catchUp(start)
	next := &decided{start: start, from: make([]int, len(c.models)), to: make([]int, len(c.models)), on: make([]int, len(c.models)),
		lease: make([]bool, len(c.models))}
	targets := make([]int, len(c.models))
	var quotes []*power.LeaseQuote
	if !cond.ForcedOff {
		quotes = c.quotes(ctx, econ.BTCUSD)
	} else {
		quotes = make([]*power.LeaseQuote, len(c.models)) // nothing leases: no need to ask
	}
	for g, m := range c.models {
		in := power.Input{Site: &c.site, Model: m, State: c.states[g], Start: start, History: c.prices[:len(c.prices):len(c.prices)],
			Hashprice: hp, Cond: cond, Watch: watch}
		to := m.Feasible(c.states[g], c.o.Strategy.Decide(&in), cond)
		if q := quotes[g]; q != nil && power.ChooseLease(&in, to, c.leasing[g], *q) {
			to, next.lease[g] = 0, true
		}
		targets[g] = to
		next.from[g], next.to[g] = c.states[g].Mode, to
		if to == 0 && !next.lease[g] && (c.states[g].Mode != 0 || c.leasing[g]) {
			step.Shed = step.Shed || stale || forced || cond.ShedAllowed
		}
	}
	reason := "price"
	switch {
	case stale:
		reason = "stale feed"
	case forced:
		reason = "demand response"
	case step.Shed:
		reason = "spike"
	}
	// Command every group; a shed goes to every machine at once.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range c.models {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shed := step.Shed && targets[g] == 0 && !next.lease[g]
			var on int
			var fails []Failure
			if c.providers[g] != nil {
				on, fails = c.applyCompute(ctx, g, targets[g], next.lease[g], shed)
			} else {
				on, fails = c.apply(ctx, g, targets[g], shed, nil)
			}
			mu.Lock()
			defer mu.Unlock()
			next.on[g] = on
			step.Failures = append(step.Failures, fails...)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err // shutting down mid-command: nothing trustworthy to report
	}
	step.Took = c.o.Clock().Sub(began)
	for g, m := range c.models {
		c.states[g] = m.Next(c.states[g], targets[g])
		c.leasing[g] = next.lease[g]
		mode := m.ModeName(targets[g])
		if next.lease[g] {
			mode = power.Leased
		}
		step.Groups = append(step.Groups, GroupDecision{Group: m.Name, Mode: mode, Reason: reason, On: next.on[g], Lease: quotes[g]})
		lease := ""
		if q := quotes[g]; q != nil {
			lease = fmt.Sprintf(" lease %.0f sat/h (%.2f sat/core-hour, occupancy %.2f)", q.SatPerHour, q.RatePerCoreHour, q.Occupancy)
		}
		fmt.Fprintf(c.o.Report, "%s price %s $/MWh hashprice %.4f $/TH/day%s: group %s -> %s (%s), %d/%d running\n",
			start.Format(time.RFC3339), last.Price, hp, lease, m.Name, mode, reason, next.on[g], m.Count)
	}
	for _, f := range step.Failures {
		if errors.Is(f.Err, context.Canceled) {
			continue // shutting down, not disobedience
		}
		fmt.Fprintf(c.o.Report, "%s: %s\n", start.Format(time.RFC3339), f)
		c.log.Warn("machine did not obey", "group", f.Group, "machine", f.Machine, "want", f.Want, "err", f.Err)
	}
	if step.Shed {
		c.log.Info("shed", "took", step.Took, "within", c.cfg.ShedWithin.Duration)
	}
	c.current = next
	return step, ctx.Err()
}

// catchUp writes the energy lines of every interval run since the last decision, up
// to next, and advances the groups' dwell over intervals that passed without a
// decision (several prices published at once, or a slow feed): the state commanded
// last held through them.
func (c *Controller) catchUp(next time.Time) {
	d := c.current
	if d == nil {
		return
	}
	for at, first := d.start, true; at.Before(next); at, first = at.Add(power.IntervalLength), false {
		for g, m := range c.models {
			from := d.to[g]
			if first {
				from = d.from[g]
			} else {
				c.states[g] = m.Next(c.states[g], d.to[g])
			}
			if c.energy == nil {
				continue
			}
			rec := power.EnergyRecord{Start: at, End: at.Add(power.IntervalLength), Site: c.cfg.Name, Group: m.Name,
				Mode: m.ModeName(d.to[g]), MachinesOn: d.on[g], EnergyWh: m.EnergyWh(from, d.to[g]),
				HashrateGHs: int64(m.THSeconds(from, d.to[g])/900*1000 + 0.5)}
			switch {
			case d.lease[g]:
				// The leased draw for the whole interval; the miners' hashing while
				// they ramp down, if they were on.
				rec.Mode, rec.Workload, rec.EnergyWh = power.Leased, power.WorkloadCompute, power.LeaseEnergyWh(c.cfg.Groups[g].Compute, m.Count)
			case d.to[g] > 0:
				rec.Workload = power.WorkloadMining
			}
			if err := c.energy.Write(rec); err != nil {
				c.log.Warn("energy record", "err", err)
			}
		}
	}
	c.current = nil
}

// apply commands group g into state to, in staggered batches unless shedding, and
// returns the number of machines verified running and the failures. Machines in skip
// are not commanded (their failure is the caller's to report).
func (c *Controller) apply(ctx context.Context, g, to int, shed bool, skip map[int]bool) (int, []Failure) {
	gc := c.cfg.Groups[g]
	ms := c.miners[g]
	batch := gc.StaggerBatch
	if shed {
		batch = len(ms)
	}
	want := c.models[g].ModeName(to)
	profile := ""
	if to > 0 {
		profile = gc.Modes[to-1].Profile
	}
	var fails []Failure
	running := 0
	var mu sync.Mutex
	sem := make(chan struct{}, c.cfg.Control.Parallel)
	for b := 0; b < len(ms); b += batch {
		if b > 0 {
			t := time.NewTimer(gc.StaggerEvery.Duration)
			select {
			case <-ctx.Done():
				t.Stop()
				return running, fails
			case <-t.C:
			}
		}
		var wg sync.WaitGroup
		for i := b; i < min(b+batch, len(ms)); i++ {
			if skip[i] {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				on, err := c.command(ctx, ms[i], to, profile, gc.Protocol)
				mu.Lock()
				defer mu.Unlock()
				if on {
					running++
				}
				if err != nil {
					fails = append(fails, Failure{Group: gc.Name, Machine: i, Want: want, Err: err})
				}
			}()
		}
		wg.Wait()
	}
	return running, fails
}

// command sends one machine its command and reads back its status until it obeys,
// resending with exponential backoff. It reports whether the machine is hashing.
func (c *Controller) command(ctx context.Context, m Miner, to int, profile, protocol string) (bool, error) {
	backoff := c.cfg.Control.Backoff.Duration
	var lastErr error
	for attempt := 0; attempt <= c.cfg.Control.Retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			case <-t.C:
			}
			backoff *= 2
		}
		var err error
		if to == 0 {
			err = m.Curtail(ctx)
		} else {
			if protocol == control.LuxOS && profile != "" {
				err = m.SetProfile(ctx, profile)
			}
			if err == nil {
				err = m.Wake(ctx)
			}
		}
		if err != nil {
			lastErr = err
			continue
		}
		st, err := m.Status(ctx)
		if err != nil {
			lastErr = err
			continue
		}
		obeyed := st.Sleeping
		if to > 0 {
			obeyed = !st.Sleeping && (protocol != control.LuxOS || profile == "" || st.Profile == profile)
		}
		if obeyed {
			return to > 0, nil
		}
		lastErr = fmt.Errorf("reports %s after the command (%.0f GH/s, %.0f W)", describe(st), st.HashrateGHs, st.Watts)
	}
	st, err := m.Status(ctx)
	return err == nil && !st.Sleeping, lastErr
}

func describe(st control.Status) string {
	if st.Sleeping {
		return "asleep"
	}
	if st.Profile != "" {
		return "running profile " + st.Profile
	}
	return "running"
}
