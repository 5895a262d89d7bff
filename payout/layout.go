package payout

import (
	"sync"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
)

// Coinbases built away from the books. A Stratum front-end on another machine than the
// payout service lays out its coinbases with the functions here, from the same
// configuration, and under PPLNS from the Layout the service publishes: the outputs it
// builds are those Service.Outputs would build for the same template.

// Layout is what a PPLNS coinbase is built from: the window the next coinbase commits
// to, whose parameters the service has stored, and its weights.
type Layout struct {
	Params     WindowParams `json:"params"`
	Commitment Hash32       `json:"commitment"`
	Weights    []Weight     `json:"weights"`
}

// Layout returns the current PPLNS layout; false before the first share.
func (s *Service) Layout() (Layout, bool) {
	c := s.cur.Load()
	if c == nil {
		return Layout{}, false
	}
	return Layout{Params: c.params, Commitment: c.commitment, Weights: c.weights}, true
}

// soloOutputs pays a SOLO coinbase to its finder, less the pool's fee.
func soloOutputs(value int64, finder, poolScript []byte, feeBps int64) []pool.Output {
	fee := value * feeBps / MaxFeeBps
	outs := []pool.Output{{Value: value - fee, Script: finder}}
	if fee > 0 {
		outs = append(outs, pool.Output{Value: fee, Script: poolScript})
	}
	return outs
}

// pplnsOutputs lays out a PPLNS coinbase of value under c: the direct credits, the
// pool's custody output, and the commitment.
func pplnsOutputs(c *committed, value int64, poolScript []byte, scriptOf func(string) ([]byte, error)) ([]pool.Output, error) {
	sp, err := SplitReward(value, c.weights, c.params.SplitParams())
	if err != nil {
		return nil, err
	}
	var outs []pool.Output
	for _, cr := range sp.Credits {
		if cr.Direct {
			sc, err := scriptOf(cr.Address)
			if err != nil {
				return nil, err
			}
			outs = append(outs, pool.Output{Value: cr.Amount, Script: sc})
		}
	}
	if cu := sp.Custody(); cu > 0 || len(outs) == 0 {
		outs = append(outs, pool.Output{Value: cu, Script: poolScript})
	}
	return append(outs, pool.Output{Value: 0, Script: CommitmentScript(c.commitment)}), nil
}

// scripts caches address scripts, bounded.
type scripts struct {
	mu sync.Mutex
	m  map[string][]byte
}

// maxCachedScripts bounds an address script cache.
const maxCachedScripts = 100_000

func (sc *scripts) of(cfg Config, addr string) ([]byte, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if s, ok := sc.m[addr]; ok {
		return s, nil
	}
	s, err := pool.AddressScript(addr, cfg.Network)
	if err != nil {
		return nil, err
	}
	if sc.m == nil || len(sc.m) > maxCachedScripts {
		sc.m = map[string][]byte{}
	}
	sc.m[addr] = s
	return s, nil
}

// SoloOutputs is a front-end's OutputFunc under SOLO: each miner's work pays its own
// address, less the fee, as Service.Outputs lays it out.
func SoloOutputs(cfg Config) pool.OutputFunc {
	var cache scripts
	return func(tmpl *node.Template, value int64, finder string) ([]pool.Output, string, error) {
		ps, err := cache.of(cfg, cfg.PoolAddress)
		if err != nil {
			return nil, "", err
		}
		if finder == "" {
			return []pool.Output{{Value: value, Script: ps}}, "", nil
		}
		fs, err := cache.of(cfg, finder)
		if err != nil {
			return nil, "", err
		}
		return soloOutputs(value, fs, ps, cfg.Split.FeeBps), finder, nil
	}
}

// LayoutOutputs is a front-end's OutputFunc under PPLNS: the coinbase of the layout
// current returns, laid out as Service.Outputs lays out its own; before there is one,
// the pool's address takes the whole coinbase (as the service does before the first
// share).
func LayoutOutputs(cfg Config, current func() (Layout, bool)) pool.OutputFunc {
	var cache scripts
	return func(tmpl *node.Template, value int64, finder string) ([]pool.Output, string, error) {
		ps, err := cache.of(cfg, cfg.PoolAddress)
		if err != nil {
			return nil, "", err
		}
		l, ok := current()
		if !ok {
			return []pool.Output{{Value: value, Script: ps}}, "", nil
		}
		c := &committed{params: l.Params, commitment: l.Commitment, weights: l.Weights}
		outs, err := pplnsOutputs(c, value, ps, func(a string) ([]byte, error) { return cache.of(cfg, a) })
		return outs, "", err
	}
}
