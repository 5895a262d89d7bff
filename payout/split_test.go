package payout

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/hashgrid/hashgrid"
)

func randWeights(r *rand.Rand, n int) []Weight {
	ws := make([]Weight, n)
	for i := range ws {
		w := hashgrid.Work{Lo: r.Uint64N(1 << 50)}
		if r.IntN(10) == 0 {
			w.Hi = r.Uint64N(1 << 20) // windows on mainnet exceed 64 bits
		}
		ws[i] = Weight{Address: fmt.Sprintf("addr%03d", r.IntN(n)), Work: w}
	}
	return ws
}

// TestSplitProperties checks, over random windows and rewards, that the credits, fee
// and dust add up to the reward exactly, that every credit is the floor of its exact
// proportional part (so within one satoshi of it), that the dust is below one satoshi
// per miner, and that direct payments follow the threshold rule.
func TestSplitProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		ws := randWeights(r, 1+r.IntN(60))
		reward := r.Int64N(maxSatoshi / 1000)
		if iter%7 == 0 {
			reward = r.Int64N(100) // tiny rewards: most miners get nothing
		}
		p := SplitParams{FeeBps: r.Int64N(MaxFeeBps + 1), DirectMin: r.Int64N(reward + 1), MaxDirect: r.IntN(10)}
		sp, err := SplitReward(reward, ws, p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sp.Fee + sp.Dust
		for _, c := range sp.Credits {
			sum += c.Amount
		}
		if sum != reward {
			t.Fatalf("iter %d: credits+fee+dust = %d, reward %d", iter, sum, reward)
		}
		if want := reward * p.FeeBps / MaxFeeBps; sp.Fee != want {
			t.Fatalf("fee %d, want %d", sp.Fee, want)
		}
		byAddr := map[string]*big.Int{}
		tot := new(big.Int)
		for _, w := range ws {
			if byAddr[w.Address] == nil {
				byAddr[w.Address] = new(big.Int)
			}
			byAddr[w.Address].Add(byAddr[w.Address], w.Work.Big())
			tot.Add(tot, w.Work.Big())
		}
		if int64(len(byAddr)) <= sp.Dust && tot.Sign() > 0 {
			t.Fatalf("dust %d with %d miners", sp.Dust, len(byAddr))
		}
		direct := 0
		for _, c := range sp.Credits {
			exact := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(reward-sp.Fee), byAddr[c.Address]), tot)
			lo, hi := new(big.Rat).SetInt64(c.Amount), new(big.Rat).SetInt64(c.Amount+1)
			if exact.Cmp(lo) < 0 || exact.Cmp(hi) >= 0 {
				t.Fatalf("credit %d for %s, exact share %s", c.Amount, c.Address, exact.FloatString(3))
			}
			if c.Direct {
				direct++
				if c.Amount < p.DirectMin || p.DirectMin == 0 {
					t.Fatalf("direct credit %d below threshold %d", c.Amount, p.DirectMin)
				}
			}
		}
		for a, wa := range byAddr {
			if sp.CreditOf(a).Amount == 0 {
				exact := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(reward-sp.Fee), wa), tot)
				if exact.Cmp(big.NewRat(1, 1)) >= 0 {
					t.Fatalf("%s got nothing, exact share %s", a, exact.FloatString(3))
				}
			}
		}
		if direct > p.MaxDirect {
			t.Fatalf("%d direct outputs, at most %d", direct, p.MaxDirect)
		}
		eligible := 0
		for _, c := range sp.Credits {
			if p.DirectMin > 0 && c.Amount >= p.DirectMin {
				eligible++
			}
		}
		if direct != min(eligible, p.MaxDirect) {
			t.Fatalf("%d direct of %d eligible (max %d)", direct, eligible, p.MaxDirect)
		}
		if sp.Custody()+sumDirect(sp) != reward {
			t.Fatalf("custody %d + direct %d != reward %d", sp.Custody(), sumDirect(sp), reward)
		}
	}
}

func sumDirect(sp Split) (n int64) {
	for _, c := range sp.Credits {
		if c.Direct {
			n += c.Amount
		}
	}
	return n
}

func TestSplitTable(t *testing.T) {
	w := func(a string, d float64) Weight { return Weight{a, hashgrid.Work{}.Add(hashgrid.DiffFromFloat(d))} }
	tests := []struct {
		name   string
		reward int64
		ws     []Weight
		p      SplitParams
		want   Split
	}{
		{"empty window: pool keeps it", 100, nil, SplitParams{}, Split{Reward: 100, Dust: 100}},
		{"thirds with dust", 100, []Weight{w("a", 1), w("b", 1), w("c", 1)}, SplitParams{},
			Split{Reward: 100, Dust: 1, Credits: []Credit{{"a", 33, false}, {"b", 33, false}, {"c", 33, false}}}},
		{"fee 2%, one direct", 1000, []Weight{w("a", 3), w("b", 1)}, SplitParams{FeeBps: 200, DirectMin: 500, MaxDirect: 5},
			Split{Reward: 1000, Fee: 20, Credits: []Credit{{"a", 735, true}, {"b", 245, false}}}},
		{"same address twice adds up", 10, []Weight{w("a", 1), w("b", 2), w("a", 1)}, SplitParams{},
			Split{Reward: 10, Credits: []Credit{{"a", 5, false}, {"b", 5, false}}}},
	}
	for _, tt := range tests {
		got, err := SplitReward(tt.reward, tt.ws, tt.p)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
	for _, p := range []SplitParams{{FeeBps: -1}, {FeeBps: 10001}, {DirectMin: -5}, {MaxDirect: MaxDirectOutputs + 1}} {
		if _, err := SplitReward(1, nil, p); err == nil {
			t.Errorf("SplitReward with %+v: no error", p)
		}
	}
	if _, err := SplitReward(-1, nil, SplitParams{}); err == nil {
		t.Error("negative reward: no error")
	}
}

func TestParseScheme(t *testing.T) {
	for _, s := range []string{"pplns", "pps", "fpps", "solo"} {
		if got, err := ParseScheme(s); err != nil || string(got) != s {
			t.Errorf("ParseScheme(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "PPLNS", "prop", "pplns "} {
		if _, err := ParseScheme(s); err == nil {
			t.Errorf("ParseScheme(%q): no error", s)
		}
	}
}
