package payout

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hashgrid/hashgrid"
)

// regtestBits is regtest's compact target: difficulty about 4.66e-10.
const regtestBits = 0x207fffff

func randShares(r *rand.Rand, n, miners int, first uint64) []WindowShare {
	out := make([]WindowShare, n)
	seq := first
	for i := range out {
		seq += 1 + r.Uint64N(3) // rejected shares leave gaps
		d := hashgrid.Diff(1 + r.Uint64N(1<<24))
		var h Hash32
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		out[i] = WindowShare{Seq: seq, Address: fmt.Sprintf("m%02d", r.IntN(miners)), Diff: d, Weight: d, Hash: h}
	}
	return out
}

func TestCutWindowProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 500; iter++ {
		sh := randShares(r, 1+r.IntN(200), 5, 0)
		var all hashgrid.Work
		for _, s := range sh {
			all = all.Add(s.Diff)
		}
		size := hashgrid.Work{Lo: r.Uint64N(all.Lo + all.Lo/2 + 1)}
		w := CutWindow(append([]WindowShare(nil), sh...), size)
		var tot hashgrid.Work
		for i, s := range w {
			if s.Weight == 0 || s.Weight > s.Diff || (i > 0 && s.Weight != s.Diff) {
				t.Fatalf("share %d of window: weight %d of diff %d", i, s.Weight, s.Diff)
			}
			tot = tot.Add(s.Weight)
		}
		if workLess(all, size) {
			if len(w) != len(sh) || tot != all {
				t.Fatalf("short window: %d of %d shares", len(w), len(sh))
			}
			continue
		}
		if tot != size {
			t.Fatalf("window weight %v, size %v", tot, size)
		}
		// Minimal: without its oldest share the window would be short.
		if len(w) > 0 && !workLess(workSub(tot, diffWork(w[0].Weight)), size) && size != (hashgrid.Work{}) {
			t.Fatalf("window not minimal")
		}
		if len(w) > 0 && w[len(w)-1].Seq != sh[len(sh)-1].Seq {
			t.Fatal("window does not end with the newest share")
		}
	}
}

func TestWindowSize(t *testing.T) {
	// Regtest: diff1/target = 0xffff·2^208 / (0x7fffff·2^232) ≈ 4.66e-10; with N = 2^32
	// (fixed point) the window is 2^32·that ≈ 2.0 Diff units.
	got, err := WindowSize(hashgrid.Diff(1)<<32<<20, regtestBits)
	if err != nil {
		t.Fatal(err)
	}
	// N = 2^20: 2^20 · 0xffff·2^208·2^32 / (0x7fffff·2^232) = 2^20·0xffff·2^8/0x7fffff.
	want := uint64(1<<20) * 0xffff * 256 / 0x7fffff
	if got.Hi != 0 || got.Lo != want {
		t.Errorf("WindowSize = %v, want %d", got, want)
	}
	// Mainnet-scale difficulty: N=8 at bits 0x17034219 exceeds 64 bits and must not wrap.
	big8, err := WindowSize(8*hashgrid.DiffOne, 0x17034219)
	if err != nil || big8.Hi == 0 {
		t.Errorf("mainnet window = %v, %v; want above 2^64", big8, err)
	}
	if _, err := WindowSize(hashgrid.DiffOne, 0x01800001); err == nil {
		t.Error("negative target: no error")
	}
}

func TestMerkleRootChangesWithEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sh := randShares(r, 7, 3, 0)
	root := func(ss []WindowShare) Hash32 {
		ls := make([]Hash32, len(ss))
		for i := range ss {
			ls[i] = ss[i].Leaf()
		}
		return MerkleRoot(ls)
	}
	base := root(sh)
	mutations := []func(*WindowShare){
		func(s *WindowShare) { s.Seq++ },
		func(s *WindowShare) { s.Address += "x" },
		func(s *WindowShare) { s.Diff++ },
		func(s *WindowShare) { s.Weight-- },
		func(s *WindowShare) { s.Hash[31] ^= 1 },
	}
	for i := range sh {
		for j, m := range mutations {
			c := append([]WindowShare(nil), sh...)
			m(&c[i])
			if root(c) == base {
				t.Errorf("mutation %d of share %d leaves the root unchanged", j, i)
			}
		}
	}
	if root(sh[:6]) == root(append(append([]WindowShare(nil), sh[:6]...), sh[5])) {
		t.Error("duplicating the last leaf leaves the root unchanged")
	}
	if MerkleRoot(nil) != (Hash32{}) {
		t.Error("empty root not zero")
	}
}

func TestCommitmentScript(t *testing.T) {
	c := Hash32{1, 2, 3}
	s := CommitmentScript(c)
	if len(s) != 38 || s[0] != 0x6a || s[1] != 36 {
		t.Fatalf("script %x", s)
	}
	got, ok := FindCommitment([][]byte{{0x51}, s})
	if !ok || got != c {
		t.Errorf("FindCommitment = %x, %v", got, ok)
	}
	if _, ok := FindCommitment([][]byte{s[:37]}); ok {
		t.Error("short script taken for a commitment")
	}
}

// publish builds what the API would publish for a window and its credit.
func publish(t *testing.T, sh []WindowShare, n hashgrid.Diff, sp SplitParams, reward int64) WindowView {
	t.Helper()
	w, err := BuildWindow(append([]WindowShare(nil), sh...), n, regtestBits, sp)
	if err != nil {
		t.Fatal(err)
	}
	split, err := SplitReward(reward, w.Weights(), sp)
	if err != nil {
		t.Fatal(err)
	}
	bc := &BlockCredit{Reward: reward, Pool: split.Pool(), Credits: split.Credits}
	return WindowView{Reward: reward, Scheme: PPLNS, Commitment: w.Params.Commitment(), Params: w.Params, Shares: w.Shares, Credit: bc}
}

func TestVerifyDetectsTampering(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	sh := randShares(r, 300, 4, 100)
	n := hashgrid.Diff(1) << 63 // about 2^31 Diff units on regtest: a few hundred shares
	sp := SplitParams{FeeBps: 100, DirectMin: 1_000_000, MaxDirect: 3}
	v := publish(t, sh, n, sp, 50_0000_0000)
	chain := &ChainFacts{Commitment: v.Commitment, HasCommit: true, Reward: v.Reward, Bits: regtestBits}
	for _, a := range []string{"m00", "m01", "m02", "m03"} {
		if got := Verify(v, a, chain); !got.OK() || got.Expected.Amount == 0 {
			t.Fatalf("honest window: %s: %+v", a, got)
		}
	}
	clone := func() WindowView {
		c := v
		c.Shares = append([]WindowShare(nil), v.Shares...)
		cr := *v.Credit
		cr.Credits = append([]Credit(nil), v.Credit.Credits...)
		c.Credit = &cr
		return c
	}
	tampers := map[string]func(*WindowView){
		"share address":   func(w *WindowView) { w.Shares[5].Address = "m00" },
		"share diff":      func(w *WindowView) { w.Shares[len(w.Shares)-1].Diff *= 2; w.Shares[len(w.Shares)-1].Weight *= 2 },
		"share weight":    func(w *WindowView) { w.Shares[3].Weight /= 2 },
		"share dropped":   func(w *WindowView) { w.Shares = append(w.Shares[:4], w.Shares[5:]...) },
		"credit altered":  func(w *WindowView) { w.Credit.Credits[0].Amount--; w.Credit.Pool++ },
		"fee raised":      func(w *WindowView) { w.Params.FeeBps = 200 },
		"reward lowered":  func(w *WindowView) { w.Reward--; w.Credit.Reward-- },
		"window shrunk":   func(w *WindowView) { w.Params.N /= 2 },
		"extra recipient": func(w *WindowView) { w.Credit.Credits = append(w.Credit.Credits, Credit{Address: "zz", Amount: 1}) },
		"base moved":      func(w *WindowView) { w.Params.Base++ },
		"version 1":       func(w *WindowView) { w.Params.Version = WindowV1 },
		"first weight":    func(w *WindowView) { w.Params.First--; w.Shares[0].Weight-- },
	}
	for name, f := range tampers {
		c := clone()
		f(&c)
		bad := 0
		for _, a := range []string{"m00", "m01", "m02", "m03"} {
			if got := Verify(c, a, chain); !got.OK() {
				bad++
			}
		}
		if bad != 4 {
			t.Errorf("%s: verify passed for %d of 4 miners", name, 4-bad)
		}
	}
	// A pool that recomputes a consistent commitment for altered shares is caught by
	// the chain's commitment.
	c := clone()
	c.Shares[7].Address = "m00"
	forged := publish(t, c.Shares, n, sp, v.Reward)
	if got := Verify(forged, "m00", nil); !got.OK() {
		t.Fatalf("self-consistent forgery should pass without the chain: %v", got.Problems)
	}
	if got := Verify(forged, "m00", chain); got.OK() {
		t.Error("forged window passes against the chain's commitment")
	}
}

// TestWindowFormatsPinned pins both commitment formats. Version 1's figures were
// computed by the code that cut every window before version 2 existed: windows
// committed then must still rebuild to the same commitment, or their blocks could no
// longer be credited or verified.
func TestWindowFormatsPinned(t *testing.T) {
	for _, tc := range []struct {
		version    int
		base       uint64
		root, comm string
	}{
		{0, 0, "4eb82f4cc4b2137eaaf5f4ae7f4654e0f297367f151a09e7e7f7ba97652746dd", "a795eedff2f8e8834737629d5fa0d134bd974925bfd061bf4d5f86bcd76eb541"},
		{WindowV1, 0, "4eb82f4cc4b2137eaaf5f4ae7f4654e0f297367f151a09e7e7f7ba97652746dd", "a795eedff2f8e8834737629d5fa0d134bd974925bfd061bf4d5f86bcd76eb541"},
		{WindowV2, 1_234_567, "cc966f8d81fc73f3403e5fdbf579d46e5518b56c405a1c0b0f6f6e3cafdf2ea3", "47fc03c8eea6d30859b9d606750de330601a0797d4073cde088efc7ba42eb82c"},
	} {
		r := rand.New(rand.NewPCG(11, 12))
		sh := randShares(r, 40, 3, 1000)
		w, err := RebuildWindow(sh, WindowParams{Version: tc.version, N: hashgrid.Diff(1) << 58, Bits: regtestBits,
			FeeBps: 150, DirectMin: 1000, MaxDirect: 2, Base: tc.base})
		if err != nil {
			t.Fatal(err)
		}
		p := w.Params
		if p.Count != 21 || p.Start != 1046 || p.End != 1087 || p.First != 4526589 || p.Base != tc.base {
			t.Errorf("version %d: window %+v", tc.version, p)
		}
		if p.Root.String() != tc.root || p.Commitment().String() != tc.comm {
			t.Errorf("version %d: root %s, commitment %s; want %s, %s", tc.version, p.Root, p.Commitment(), tc.root, tc.comm)
		}
	}
}

func TestRebuildWindowRefusesBadFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	sh := randShares(r, 30, 3, 0)
	for _, p := range []WindowParams{
		{Version: 3},
		{Version: -1},
		{Version: WindowV1, Base: 5},
		{Version: WindowV2, Base: ^uint64(0) - 3},
	} {
		p.N, p.Bits = hashgrid.Diff(1)<<58, regtestBits
		if _, err := RebuildWindow(append([]WindowShare(nil), sh...), p); err == nil {
			t.Errorf("version %d base %d: no error", p.Version, p.Base)
		}
	}
	// The version is committed to: the same fields under another version hash apart.
	p := WindowParams{Version: WindowV2, Count: 1}
	q := p
	q.Version = 3
	if p.Commitment() == q.Commitment() {
		t.Error("versions 2 and 3 share a commitment")
	}
}

func TestLeafV2ChangesWithEveryFieldButWeight(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	s := randShares(r, 1, 1, 0)[0]
	base := s.LeafV2()
	for i, m := range []func(*WindowShare){
		func(s *WindowShare) { s.Seq++ },
		func(s *WindowShare) { s.Address += "x" },
		func(s *WindowShare) { s.Diff++ },
		func(s *WindowShare) { s.Hash[31] ^= 1 },
	} {
		c := s
		m(&c)
		if c.LeafV2() == base {
			t.Errorf("mutation %d leaves the leaf unchanged", i)
		}
	}
	c := s
	c.Weight--
	if c.LeafV2() != base || c.Leaf() == s.Leaf() {
		t.Error("the weight is in the version 2 leaf, or not in the version 1 leaf")
	}
}

// TestVerifyVersion1Window: a block whose coinbase committed to a version 1 window
// (cut before version 2) still verifies, and a tampered one still fails.
func TestVerifyVersion1Window(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	sh := randShares(r, 300, 4, 100)
	sp := SplitParams{FeeBps: 100, DirectMin: 1_000_000, MaxDirect: 3}
	w, err := RebuildWindow(sh, WindowParams{N: hashgrid.Diff(1) << 63, Bits: regtestBits, FeeBps: sp.FeeBps, DirectMin: sp.DirectMin, MaxDirect: sp.MaxDirect})
	if err != nil {
		t.Fatal(err)
	}
	split, err := SplitReward(50_0000_0000, w.Weights(), sp)
	if err != nil {
		t.Fatal(err)
	}
	v := WindowView{Reward: 50_0000_0000, Scheme: PPLNS, Commitment: w.Params.Commitment(), Params: w.Params, Shares: w.Shares,
		Credit: &BlockCredit{Reward: 50_0000_0000, Pool: split.Pool(), Credits: split.Credits}}
	chain := &ChainFacts{Commitment: v.Commitment, HasCommit: true, Reward: v.Reward, Bits: regtestBits}
	if got := Verify(v, "m01", chain); !got.OK() || got.Expected.Amount == 0 {
		t.Fatalf("version 1 window: %+v", got)
	}
	v.Shares = append([]WindowShare(nil), v.Shares...)
	v.Shares[0].Weight--
	v.Params.First--
	if got := Verify(v, "m01", chain); got.OK() {
		t.Error("version 1 window with a lowered first weight passes")
	}
}
