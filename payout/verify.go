package payout

import (
	"fmt"
)

// ChainFacts are what a verifier read from the chain itself (a node it trusts) about a
// block: the commitment in its coinbase, the coinbase's total value and its bits.
type ChainFacts struct {
	Commitment Hash32
	HasCommit  bool
	Reward     int64
	Bits       uint32
	// Direct lists the coinbase's outputs by address (outputs to other scripts are
	// left out), so that direct credits can be checked against what the chain paid.
	Direct map[string]int64
}

// Verification is the outcome of Verify.
type Verification struct {
	Address   string   `json:"address"`
	Expected  Credit   `json:"expected"`  // recomputed from the published window
	Published Credit   `json:"published"` // what the pool says it credited
	Shares    int      `json:"shares"`    // window shares checked
	Mine      int      `json:"mine"`      // of them the address's
	Problems  []string `json:"problems,omitempty"`
}

// OK reports whether nothing was wrong.
func (v Verification) OK() bool { return len(v.Problems) == 0 }

// Verify recomputes a PPLNS block's window and split from the published view (all of
// its shares gathered in v.Shares) and compares them with what the pool published and,
// when chain is not nil, with the block on the chain. Any altered share, weight,
// parameter or credit is a problem.
func Verify(v WindowView, addr string, chain *ChainFacts) Verification {
	out := Verification{Address: addr, Shares: len(v.Shares)}
	bad := func(format string, args ...any) { out.Problems = append(out.Problems, fmt.Sprintf(format, args...)) }
	p := v.Params
	size, err := WindowSize(p.N, p.Bits)
	if err != nil {
		bad("window size: %v", err)
		return out
	}
	if WorkJSON(size) != p.Size {
		bad("window size published as %s, N·difficulty is %s", hashgridWork(p.Size), hashgridWork(WorkJSON(size)))
	}
	if v.Commitment != p.Commitment() {
		bad("published parameters hash to %s, not the published commitment %s", p.Commitment(), v.Commitment)
	}
	if chain != nil {
		switch {
		case !chain.HasCommit:
			bad("the block's coinbase carries no window commitment")
		case chain.Commitment != v.Commitment:
			bad("the block's coinbase commits to %s, the pool publishes %s", chain.Commitment, v.Commitment)
		}
		if chain.Bits != p.Bits {
			bad("the block's bits are %08x, the window was sized for %08x", chain.Bits, p.Bits)
		}
		if chain.Reward != v.Reward {
			bad("the coinbase pays %d sat, the pool publishes a reward of %d", chain.Reward, v.Reward)
		}
	}
	for i := 1; i < len(v.Shares); i++ {
		if v.Shares[i].Seq <= v.Shares[i-1].Seq {
			bad("shares out of order at seq %d", v.Shares[i].Seq)
			return out
		}
	}
	shares := append([]WindowShare(nil), v.Shares...)
	w, err := RebuildWindow(shares, p)
	if err != nil {
		bad("rebuild window: %v", err)
		return out
	}
	if len(w.Shares) != len(v.Shares) {
		bad("the published shares make a window of %d shares, %d published", len(w.Shares), len(v.Shares))
	}
	off := len(v.Shares) - len(w.Shares)
	for i, s := range w.Shares {
		if pub := v.Shares[off+i]; pub.Weight != s.Weight {
			bad("share %d: published weight %d, its difficulty gives %d", s.Seq, pub.Weight, s.Weight)
		}
		if s.Address == addr {
			out.Mine++
		}
	}
	if got := w.Params.Commitment(); got != v.Commitment {
		bad("the published shares hash to commitment %s, not %s (root %s, want %s)", got, v.Commitment, w.Params.Root, p.Root)
	}
	reward := v.Reward
	if chain != nil {
		reward = chain.Reward
	}
	sp, err := SplitReward(reward, w.Weights(), p.SplitParams())
	if err != nil {
		bad("split: %v", err)
		return out
	}
	out.Expected = sp.CreditOf(addr)
	if v.Credit == nil {
		bad("the pool has not credited this block")
		return out
	}
	for _, c := range v.Credit.Credits {
		if c.Address == addr {
			out.Published.Address, out.Published.Amount = addr, out.Published.Amount+c.Amount
			out.Published.Direct = out.Published.Direct || c.Direct
		}
	}
	out.Published.Address = addr
	if out.Published != out.Expected {
		bad("%s: the pool credited %d sat (direct %v), the window gives %d sat (direct %v)", addr,
			out.Published.Amount, out.Published.Direct, out.Expected.Amount, out.Expected.Direct)
	}
	// The whole split, not only this miner's line: a pool that shorted someone else
	// is caught by every miner.
	want := map[string]Credit{}
	for _, c := range sp.Credits {
		want[c.Address] = c
	}
	got := map[string]Credit{}
	for _, c := range v.Credit.Credits {
		got[c.Address] = c
	}
	for a, c := range want {
		if got[a] != c {
			bad("%s: credited %d sat, the window gives %d", a, got[a].Amount, c.Amount)
		}
	}
	for a, c := range got {
		if _, ok := want[a]; !ok {
			bad("%s: credited %d sat without weight in the window", a, c.Amount)
		}
	}
	if v.Credit.Reward != reward || v.Credit.Pool != sp.Pool() {
		bad("the pool booked reward %d and kept %d, the split gives %d and %d", v.Credit.Reward, v.Credit.Pool, reward, sp.Pool())
	}
	if chain != nil && chain.Direct != nil && out.Expected.Direct && chain.Direct[addr] != out.Expected.Amount {
		bad("%s: the coinbase pays %d sat, the direct credit is %d", addr, chain.Direct[addr], out.Expected.Amount)
	}
	return out
}

func hashgridWork(w WorkJSON) string { b, _ := w.MarshalText(); return string(b) }
