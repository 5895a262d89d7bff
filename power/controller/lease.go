package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/provider"
	"github.com/hashgrid/hashgrid/power"
)

// Provider is a provider agent's control endpoint (provider.ControlClient is one).
type Provider interface {
	Status(ctx context.Context) (provider.ControlStatus, error)
	Pause(ctx context.Context) (provider.ControlStatus, error)
	Resume(ctx context.Context) (provider.ControlStatus, error)
	Release(ctx context.Context) (provider.ControlStatus, error)
}

// OfferSource lists a compute market's offers (compute.Client is one).
type OfferSource interface {
	Offers(ctx context.Context) ([]compute.Offer, error)
}

// addCompute sets up group gi's provider agents and market, if it can lease.
func (c *Controller) addCompute(gi int, g power.GroupConfig) error {
	c.leasing = append(c.leasing, false)
	if g.Compute == nil {
		c.providers = append(c.providers, nil)
		c.offers = append(c.offers, nil)
		return nil
	}
	cc := g.Compute
	var ps []Provider
	if c.o.Providers != nil && gi < len(c.o.Providers) && c.o.Providers[gi] != nil {
		ps = c.o.Providers[gi]
	} else {
		for _, a := range cc.Controls {
			cl, err := provider.NewControlClient(a, c.cfg.Control.Timeout.Duration+provider.ControlMarketTimeout)
			if err != nil {
				return fmt.Errorf("controller: group %s: %w", g.Name, err)
			}
			ps = append(ps, cl)
		}
	}
	if len(ps) != 1 && len(ps) != g.Count {
		return fmt.Errorf("controller: group %s: %d provider agents, want one per machine (%d) or one for the group", g.Name, len(ps), g.Count)
	}
	var src OfferSource
	if c.o.Offers != nil && gi < len(c.o.Offers) && c.o.Offers[gi] != nil {
		src = c.o.Offers[gi]
	} else {
		src = &compute.Client{Base: cc.Market, HTTP: &http.Client{Timeout: c.cfg.Control.Timeout.Duration + provider.ControlMarketTimeout}}
	}
	c.providers = append(c.providers, ps)
	c.offers = append(c.offers, src)
	return nil
}

// quotes prices leasing for every group that can lease: nil for the others, and for
// a group whose providers or market could not be read (it then does not lease). The
// reads are bounded by half of shed_within, so that a slow market cannot hold up a
// shed.
func (c *Controller) quotes(ctx context.Context, btcUSD float64) []*power.LeaseQuote {
	out := make([]*power.LeaseQuote, len(c.models))
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ShedWithin.Duration/2)
	defer cancel()
	for g, ps := range c.providers {
		if ps == nil {
			continue
		}
		gc := c.cfg.Groups[g]
		lm, err := c.leaseMarket(ctx, g)
		if err != nil {
			c.log.Warn("compute market: leasing not weighed this interval", "group", gc.Name, "err", err)
			continue
		}
		q := power.QuoteLease(gc.Compute, gc.Count, lm, btcUSD)
		c.log.Debug("lease quote", "group", gc.Name, "charged_sat", lm.ChargedSat, "held_core_ms", lm.HeldCoreMS, "floor_sat", lm.FloorSat,
			"busy_cores", lm.BusyCores, "offered_cores", lm.OfferedCores, "sat_per_hour", q.SatPerHour, "revenue_usd", q.Revenue.String())
		out[g] = &q
	}
	return out
}

// leaseMarket reads what power.LeaseMarket needs for group g: each provider's leases
// created within the window (through its agent, which reads the market), the lowest
// price floor among them, and the market's offers.
func (c *Controller) leaseMarket(ctx context.Context, g int) (power.LeaseMarket, error) {
	cc := c.cfg.Groups[g].Compute
	since := c.o.Clock().Add(-cc.Window.Duration)
	var lm power.LeaseMarket
	ps := c.providers[g]
	sts := make([]provider.ControlStatus, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.cfg.Control.Parallel)
	for i, p := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sts[i], errs[i] = p.Status(ctx)
		}()
	}
	wg.Wait()
	seenProv, seenLease := map[string]bool{}, map[string]bool{}
	for i, st := range sts {
		if errs[i] != nil {
			return lm, fmt.Errorf("provider %d: %w", i, errs[i])
		}
		if st.Market == nil {
			return lm, fmt.Errorf("provider %d: market view: %s", i, st.MarketError)
		}
		v := st.Market
		if seenProv[v.ID] {
			continue
		}
		seenProv[v.ID] = true
		if len(seenProv) == 1 || v.Price < lm.FloorSat {
			lm.FloorSat = v.Price
		}
		for _, l := range v.Leases {
			if seenLease[l.ID] || l.Created.Before(since) {
				continue
			}
			seenLease[l.ID] = true
			lm.ChargedSat += l.Charged
			lm.HeldCoreMS += int64(l.Cores) * l.WallMS
		}
	}
	offers, err := c.offers[g].Offers(ctx)
	if err != nil {
		return lm, err
	}
	for _, o := range offers {
		lm.OfferedCores += int64(o.Resources.Cores)
		lm.BusyCores += int64(max(o.Resources.Cores-o.Free.Cores, 0))
	}
	return lm, nil
}

// providerOf maps machine i of group g to its provider agent's index.
func (c *Controller) providerOf(g, i int) int {
	if len(c.providers[g]) == 1 {
		return 0
	}
	return i
}

// applyCompute commands a group that can lease. To lease: the miners are curtailed
// first, then the offers of the machines whose miners obeyed are resumed. Otherwise
// (a mining mode, or curtailed): the offers are paused first; the leases running on
// them are waited for up to drain (none on a shed) and those still running then are
// handed back (provider.Agent.Release: the market ends them with the work metered
// paid and the rest of the budget returned); only then are the machines whose
// provider obeyed woken (a curtail goes to every miner whatever the providers did).
// It returns the machines verified in the wanted state and the failures.
func (c *Controller) applyCompute(ctx context.Context, g, to int, lease, shed bool) (int, []Failure) {
	gc := c.cfg.Groups[g]
	if lease {
		_, fails := c.apply(ctx, g, 0, shed, nil)
		// A machine whose miner did not curtail does not lease: it would draw for both.
		hashing := map[int]bool{}
		for _, f := range fails {
			hashing[f.Machine] = true
		}
		ok := c.commandProviders(ctx, g, false, func(pi int) bool {
			for i := range gc.Count {
				if c.providerOf(g, i) == pi && hashing[i] {
					return false
				}
			}
			return true
		}, &fails)
		n := 0
		for i := range gc.Count {
			if ok[c.providerOf(g, i)] && !hashing[i] {
				n++
			}
		}
		return n, fails
	}
	var fails []Failure
	ok := c.commandProviders(ctx, g, true, func(int) bool { return true }, &fails)
	drain := gc.Compute.Drain.Duration
	if shed {
		drain = 0
	}
	c.drain(ctx, g, ok, drain, &fails)
	skip := map[int]bool{}
	if to > 0 {
		for i := range gc.Count {
			if !ok[c.providerOf(g, i)] {
				skip[i] = true
				fails = append(fails, Failure{Group: gc.Name, Machine: i, Want: c.models[g].ModeName(to),
					Err: errors.New("not woken: its provider agent did not stop leasing")})
			}
		}
	}
	on, mf := c.apply(ctx, g, to, shed, skip)
	return on, append(fails, mf...)
}

// commandProviders pauses (or resumes) the providers of group g for which want(pi)
// holds, each with retries, and reads back that each obeyed, at its agent and at the
// market. It returns, per provider, whether it is verified in the wanted state.
func (c *Controller) commandProviders(ctx context.Context, g int, pause bool, want func(pi int) bool, fails *[]Failure) []bool {
	gc := c.cfg.Groups[g]
	ps := c.providers[g]
	ok := make([]bool, len(ps))
	what := "leasing"
	if pause {
		what = "paused offer"
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.cfg.Control.Parallel)
	for pi, p := range ps {
		if !want(pi) {
			mu.Lock()
			*fails = append(*fails, Failure{Group: gc.Name, Machine: pi, Want: what, Err: errors.New("offer not resumed: its miner did not curtail")})
			mu.Unlock()
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := c.commandProvider(ctx, p, pause)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				*fails = append(*fails, Failure{Group: gc.Name, Machine: pi, Want: what, Err: err})
				return
			}
			ok[pi] = true
		}()
	}
	wg.Wait()
	return ok
}

// commandProvider sends one provider agent pause or resume and reads back its status
// until both the agent and the market say it obeyed, resending with exponential
// backoff.
func (c *Controller) commandProvider(ctx context.Context, p Provider, pause bool) error {
	backoff := c.cfg.Control.Backoff.Duration
	var lastErr error
	for attempt := 0; attempt <= c.cfg.Control.Retries; attempt++ {
		if attempt > 0 {
			if !wait(ctx, backoff) {
				return ctx.Err()
			}
			backoff *= 2
		}
		var err error
		if pause {
			_, err = p.Pause(ctx)
		} else {
			_, err = p.Resume(ctx)
		}
		if err != nil {
			lastErr = err
			continue
		}
		st, err := p.Status(ctx)
		if err != nil {
			lastErr = err
			continue
		}
		if st.Paused == pause && st.Market != nil && st.Market.Paused == pause {
			return nil
		}
		lastErr = fmt.Errorf("reports paused %t at the agent, %s after the command", st.Paused, marketPaused(st))
	}
	return lastErr
}

func marketPaused(st provider.ControlStatus) string {
	if st.Market == nil {
		return "market unreadable: " + st.MarketError
	}
	return fmt.Sprintf("paused %t at the market", st.Market.Paused)
}

// busy reports whether a paused provider still has leases: running at its agent, or
// running or pending (assigned before the pause, to be fetched) at the market.
func busy(st provider.ControlStatus) bool {
	if len(st.Running) > 0 || st.Market == nil {
		return true
	}
	for _, l := range st.Market.Leases {
		if l.Status == compute.LeasePending || l.Status == compute.LeaseRunning {
			return true
		}
	}
	return false
}

// drain waits up to d for the paused providers of group g (those ok) to have no
// lease left, then hands back what still runs, with retries; a provider that cannot
// be drained is marked not ok and reported.
func (c *Controller) drain(ctx context.Context, g int, ok []bool, d time.Duration, fails *[]Failure) {
	gc := c.cfg.Groups[g]
	ps := c.providers[g]
	deadline := time.Now().Add(d)
	poll := max(c.cfg.Control.VerifyWait.Duration, 10*time.Millisecond)
	idle := func(pi int) bool {
		st, err := ps[pi].Status(ctx)
		return err == nil && !busy(st)
	}
	for {
		left := false
		for pi := range ps {
			if ok[pi] && !idle(pi) {
				left = true
			}
		}
		if !left {
			return
		}
		if !time.Now().Before(deadline) || !wait(ctx, poll) {
			break
		}
	}
	if ctx.Err() != nil {
		return
	}
	// The drain is over: hand back what still runs.
	for pi, p := range ps {
		if !ok[pi] || idle(pi) {
			continue
		}
		backoff := c.cfg.Control.Backoff.Duration
		var lastErr error
		done := false
		for attempt := 0; attempt <= c.cfg.Control.Retries && !done; attempt++ {
			if attempt > 0 && !wait(ctx, backoff) {
				return
			}
			backoff *= 2
			st, err := p.Release(ctx)
			if err == nil && len(st.Running) > 0 {
				c.log.Info("leases handed back", "group", gc.Name, "provider", st.Provider, "leases", st.Running, "after", d)
			}
			if err != nil {
				lastErr = err
				continue
			}
			// The agent ends each lease with a final report; wait for it to land.
			for range 50 {
				if done = idle(pi); done || !wait(ctx, poll) {
					break
				}
			}
			if !done {
				lastErr = errors.New("leases still running after being handed back")
			}
		}
		if !done {
			ok[pi] = false
			*fails = append(*fails, Failure{Group: gc.Name, Machine: pi, Want: "no running lease", Err: lastErr})
		}
	}
}

// wait sleeps d unless ctx ends first; it reports whether it slept.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
