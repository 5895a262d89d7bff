package payout

import (
	"fmt"
	"math/big"
	"sort"

	"github.com/hashgrid/hashgrid"
)

// Scheme is a payout scheme.
type Scheme string

// The schemes.
const (
	PPLNS Scheme = "pplns" // reward split over the last N·difficulty of share weight
	PPS   Scheme = "pps"   // every share paid at once from the subsidy; the pool keeps blocks
	FPPS  Scheme = "fpps"  // PPS plus the average fees of recent templates
	SOLO  Scheme = "solo"  // the finder's coinbase pays the finder
)

// ParseScheme checks a scheme name.
func ParseScheme(s string) (Scheme, error) {
	switch Scheme(s) {
	case PPLNS, PPS, FPPS, SOLO:
		return Scheme(s), nil
	}
	return "", fmt.Errorf("payout: unknown scheme %q (want pplns, pps, fpps or solo)", s)
}

// MaxFeeBps is the largest pool fee: 100%.
const MaxFeeBps = 10_000

// Weight is one address's share weight in a window, in Diff units (2^32 per
// difficulty 1), summed exactly.
type Weight struct {
	Address string
	Work    hashgrid.Work
}

// Credit is one address's part of a block reward.
type Credit struct {
	Address string `json:"address"`
	Amount  int64  `json:"amount_sat"`
	// Direct credits are paid by an output of the block's own coinbase; the others
	// are held by the pool as a balance until a payout.
	Direct bool `json:"direct"`
}

// Split is the division of one reward.
type Split struct {
	Reward  int64    `json:"reward_sat"`
	Fee     int64    `json:"fee_sat"`  // pool fee, floor(reward·fee_bps/10000)
	Dust    int64    `json:"dust_sat"` // rounding remainder, kept by the pool
	Credits []Credit `json:"credits"`  // by address; no zero amounts
}

// Pool returns what the pool keeps: fee and dust.
func (s Split) Pool() int64 { return s.Fee + s.Dust }

// Custody returns what the coinbase pays the pool's own address: fee, dust and the
// credits that are not paid directly.
func (s Split) Custody() int64 {
	c := s.Fee + s.Dust
	for _, cr := range s.Credits {
		if !cr.Direct {
			c += cr.Amount
		}
	}
	return c
}

// CreditOf returns the credit of addr (zero if none).
func (s Split) CreditOf(addr string) Credit {
	i := sort.Search(len(s.Credits), func(i int) bool { return s.Credits[i].Address >= addr })
	if i < len(s.Credits) && s.Credits[i].Address == addr {
		return s.Credits[i]
	}
	return Credit{Address: addr}
}

// SplitParams are the scheme parameters a split depends on.
type SplitParams struct {
	FeeBps int64 // pool fee in basis points, 0..10000
	// DirectMin is the smallest credit paid by a coinbase output; 0 pays nothing directly.
	DirectMin int64
	// MaxDirect bounds the coinbase outputs paying miners (largest credits first).
	MaxDirect int
}

// Validate checks the parameters.
func (p SplitParams) Validate() error {
	if p.FeeBps < 0 || p.FeeBps > MaxFeeBps {
		return fmt.Errorf("payout: fee %d bps out of range 0..%d", p.FeeBps, MaxFeeBps)
	}
	if p.DirectMin < 0 {
		return fmt.Errorf("payout: negative coinbase threshold %d", p.DirectMin)
	}
	if p.MaxDirect < 0 || p.MaxDirect > MaxDirectOutputs {
		return fmt.Errorf("payout: %d direct outputs, at most %d", p.MaxDirect, MaxDirectOutputs)
	}
	return nil
}

// MaxDirectOutputs bounds coinbase outputs paying miners, so that the coinbase stays
// small enough to relay quickly and fit any miner's firmware.
const MaxDirectOutputs = 200

// SplitReward divides reward over weights (several entries for one address add up).
// With no weight at all, the pool keeps the reward.
func SplitReward(reward int64, weights []Weight, p SplitParams) (Split, error) {
	if reward < 0 || reward > maxSatoshi {
		return Split{}, fmt.Errorf("payout: reward %d out of range", reward)
	}
	if err := p.Validate(); err != nil {
		return Split{}, err
	}
	s := Split{Reward: reward, Fee: reward * p.FeeBps / MaxFeeBps}
	dist := reward - s.Fee
	byAddr := map[string]hashgrid.Work{}
	var total hashgrid.Work
	for _, w := range weights {
		byAddr[w.Address] = byAddr[w.Address].Plus(w.Work)
		total = total.Plus(w.Work)
	}
	if total == (hashgrid.Work{}) {
		s.Dust = dist
		return s, nil
	}
	tot := total.Big()
	d := big.NewInt(dist)
	var q big.Int
	paid := int64(0)
	for a, w := range byAddr {
		q.Mul(d, w.Big())
		q.Quo(&q, tot)
		if c := q.Int64(); c > 0 {
			s.Credits = append(s.Credits, Credit{Address: a, Amount: c})
			paid += c
		}
	}
	s.Dust = dist - paid
	markDirect(s.Credits, p)
	sort.Slice(s.Credits, func(i, j int) bool { return s.Credits[i].Address < s.Credits[j].Address })
	return s, nil
}

// markDirect flags the credits paid by the coinbase: at least DirectMin, the largest
// MaxDirect of them (ties by address).
func markDirect(cs []Credit, p SplitParams) {
	if p.DirectMin <= 0 || p.MaxDirect == 0 {
		return
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Amount != cs[j].Amount {
			return cs[i].Amount > cs[j].Amount
		}
		return cs[i].Address < cs[j].Address
	})
	for i := range cs {
		if i >= p.MaxDirect || cs[i].Amount < p.DirectMin {
			break
		}
		cs[i].Direct = true
	}
}

const maxSatoshi = 21_000_000 * 100_000_000
