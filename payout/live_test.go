package payout

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hashgrid/hashgrid"
)

// refRoot is AlignedRoot written as its definition: the value of the top node of the
// tree over 64-bit positions, leaves at base+i.
func refRoot(base uint64, leaves []Hash32) Hash32 {
	var node func(k uint, j uint64) (Hash32, bool)
	node = func(k uint, j uint64) (Hash32, bool) {
		lo := j << k
		hi := lo + (uint64(1)<<k - 1)
		if k == 64 {
			lo, hi = 0, ^uint64(0)
		}
		last := base + uint64(len(leaves)) - 1
		if hi < base || lo > last {
			return Hash32{}, false
		}
		if k == 0 {
			return leaves[lo-base], true
		}
		l, lok := node(k-1, 2*j)
		r, rok := node(k-1, 2*j+1)
		switch {
		case lok && rok:
			return hashPair(&l, &r), true
		case lok:
			return l, true
		}
		return r, rok
	}
	h, _ := node(64, 0)
	return h
}

func randLeaves(r *rand.Rand, n int) []Hash32 {
	out := make([]Hash32, n)
	for i := range out {
		for j := range out[i] {
			out[i][j] = byte(r.Uint32())
		}
	}
	return out
}

func TestAlignedRootFollowsDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for iter := 0; iter < 300; iter++ {
		leaves := randLeaves(r, 1+r.IntN(70))
		base := r.Uint64N(1000)
		switch iter % 3 {
		case 1:
			base = ^uint64(0) - uint64(len(leaves)) + 1 - r.Uint64N(3) // the top of the position space
		case 2:
			base = uint64(r.IntN(4)) << 40
		}
		want := refRoot(base, leaves)
		if got := AlignedRoot(base, append([]Hash32(nil), leaves...)); got != want {
			t.Fatalf("base %d, %d leaves: AlignedRoot %s, definition %s", base, len(leaves), got, want)
		}
	}
	leaves := randLeaves(r, 37)
	if AlignedRoot(0, append([]Hash32(nil), leaves...)) != MerkleRoot(append([]Hash32(nil), leaves...)) {
		t.Error("AlignedRoot at base 0 differs from MerkleRoot")
	}
	if AlignedRoot(3, append([]Hash32(nil), leaves...)) == AlignedRoot(4, append([]Hash32(nil), leaves...)) {
		t.Error("bases 3 and 4 give one root over 37 leaves")
	}
	if AlignedRoot(5, nil) != (Hash32{}) {
		t.Error("empty root not zero")
	}
}

// modelWindow is the live window done the obvious way: every share kept in a slice,
// the window recut and rehashed from scratch.
type modelWindow struct {
	all  []WindowShare // every share added; all[i] has position i
	head int           // retained: all[head:]
	size hashgrid.Work
}

func (m *modelWindow) add(s WindowShare) {
	m.all = append(m.all, s)
	m.trim()
}

func (m *modelWindow) setSize(size hashgrid.Work) {
	m.size = size
	m.trim()
}

// trim drops the oldest shares while the rest reach twice the size and the window
// (the shortest suffix reaching the size) keeps all of its shares.
func (m *modelWindow) trim() {
	retain := m.size.Plus(m.size)
	var held hashgrid.Work
	for _, s := range m.all[m.head:] {
		held = held.Add(s.Diff)
	}
	cut := m.windowStart()
	for m.head < cut {
		rest := workSub(held, diffWork(m.all[m.head].Diff))
		if workLess(rest, retain) {
			break
		}
		held = rest
		m.head++
	}
}

// windowStart returns the position of the window's oldest share: back from the newest
// share while the difficulties taken are short of the size (CutWindow's rule).
func (m *modelWindow) windowStart() int {
	var acc hashgrid.Work
	i := len(m.all)
	for i > m.head && workLess(acc, m.size) {
		i--
		acc = acc.Add(m.all[i].Diff)
	}
	return i
}

func (m *modelWindow) window(t *testing.T, n hashgrid.Diff, bits uint32, sp SplitParams) Window {
	t.Helper()
	ret := append([]WindowShare(nil), m.all[m.head:]...)
	base := uint64(m.windowStart())
	if base == uint64(len(m.all)) {
		base = 0 // an empty window has no position
	}
	w, err := RebuildWindow(ret, WindowParams{Version: WindowV2, N: n, Bits: bits, FeeBps: sp.FeeBps,
		DirectMin: sp.DirectMin, MaxDirect: sp.MaxDirect, Base: base})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func weightMap(ws []Weight) map[string]hashgrid.Work {
	m := map[string]hashgrid.Work{}
	for _, w := range ws {
		if _, dup := m[w.Address]; dup {
			m[w.Address+" (twice)"] = w.Work
		}
		m[w.Address] = m[w.Address].Plus(w.Work)
	}
	return m
}

// nWithSize returns an N whose window on regtest is about size Diff units (below 2^33).
func nWithSize(size uint64) hashgrid.Diff {
	// Regtest: a window is N·0xffff/(0x7fffff·2^24) Diff units, about N/2^31.
	return hashgrid.Diff(size << 31)
}

// TestLiveWindowMatchesRebuild drives the live window and the model through random
// shares (some of zero difficulty, addresses coming and going) and random window sizes
// (difficulty rises and falls, some to zero), and checks after many steps that the
// live window holds the same shares and cuts the same window as one rebuilt from
// scratch: the same parameters and root, so the same commitment, and the same weights.
func TestLiveWindowMatchesRebuild(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	sp := SplitParams{FeeBps: 150, DirectMin: 1000, MaxDirect: 3}
	var lw liveWindow
	var m modelWindow
	seq := uint64(0)
	avg := uint64(1 << 16)
	n := nWithSize(300 * avg)
	var pending *hashgrid.Work
	setN := func(nn hashgrid.Diff, now bool) {
		n = nn
		size, err := WindowSize(n, regtestBits)
		if err != nil {
			t.Fatal(err)
		}
		if now || r.IntN(2) == 0 {
			lw.setSize(size)
			m.setSize(size)
			pending = nil
		} else {
			// The next cut sets it: until then both trim to the old size.
			pending = &size
		}
	}
	setN(n, true)
	checks := 0
	for step := 0; step < 12_000; step++ {
		switch x := r.IntN(1000); {
		case x < 3:
			// A difficulty change: the window grows or shrinks several-fold.
			setN(nWithSize(uint64(1+r.IntN(1200))*avg), false)
		case x < 4:
			setN(0, false)
		case x < 5:
			setN(nWithSize(avg/3), false) // a window shorter than one share
		}
		for k := 1 + r.IntN(8); k > 0; k-- {
			seq += 1 + r.Uint64N(3)
			d := hashgrid.Diff(1 + r.Uint64N(2*avg))
			if r.IntN(50) == 0 {
				d = 0
			}
			addr := fmt.Sprintf("m%02d", r.IntN(12))
			if r.IntN(20) == 0 {
				addr = fmt.Sprintf("once%d", seq)
			}
			s := WindowShare{Seq: seq, Address: addr, Diff: d, Weight: d}
			s.Hash[0], s.Hash[1], s.Hash[31] = byte(seq), byte(seq>>8), byte(r.Uint32())
			lw.add(s)
			m.add(s)
		}
		if r.IntN(10) != 0 {
			continue
		}
		checks++
		if pending != nil {
			m.setSize(*pending)
			pending = nil
		}
		p, weights, err := lw.window(n, regtestBits, sp)
		if err != nil {
			t.Fatal(err)
		}
		want := m.window(t, n, regtestBits, sp)
		first := seq + 1
		held := map[string]bool{}
		for _, s := range m.all[m.head:] {
			held[s.Address] = true
		}
		if m.head < len(m.all) {
			first = m.all[m.head].Seq
		}
		if lw.len() != len(m.all)-m.head || lw.first() != first || lw.last() != seq {
			t.Fatalf("step %d: live holds %d shares from %d to %d, want %d from %d to %d",
				step, lw.len(), lw.first(), lw.last(), len(m.all)-m.head, first, seq)
		}
		if p != want.Params {
			t.Fatalf("step %d: live window\n%+v\nrebuilt\n%+v", step, p, want.Params)
		}
		got, exp := weightMap(weights), weightMap(want.Weights())
		if len(got) != len(exp) {
			t.Fatalf("step %d: weights of %d addresses, want %d: %v, want %v", step, len(got), len(exp), got, exp)
		}
		for a, w := range exp {
			if got[a] != w {
				t.Fatalf("step %d: weight of %s is %v, want %v", step, a, got[a], w)
			}
		}
		if lw.addrs.inWin != len(exp) || len(lw.addrs.ids) != len(held) || len(lw.addrs.ent)-len(lw.addrs.free) != len(held) {
			t.Fatalf("step %d: address table: %d in the window (want %d), %d interned, %d entries used (want %d)",
				step, lw.addrs.inWin, len(exp), len(lw.addrs.ids), len(lw.addrs.ent)-len(lw.addrs.free), len(held))
		}
	}
	if checks < 1000 {
		t.Fatalf("only %d checks", checks)
	}
	// The retained set followed the size down: the blocks and cached nodes went with it.
	if want := (lw.next-1)>>blockBits - lw.head>>blockBits + 1; lw.blocks.n != want {
		t.Errorf("%d blocks held for positions %d to %d, want %d", lw.blocks.n, lw.head, lw.next-1, want)
	}
	for k := range lw.nodes {
		if r := lw.nodes[k]; r.n > 0 && r.head<<(k+cacheLevel) < lw.head {
			t.Errorf("level %d keeps node %d, whose leaves start before the oldest share held (%d)", k+cacheLevel, r.head, lw.head)
		}
	}
}

// TestLiveRootEveryRange checks the live window's root over every range of a few
// hundred positions (a sample of the larger ones) against AlignedRoot over the leaves.
func TestLiveRootEveryRange(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	var lw liveWindow
	const total = 5000
	shares := randShares(r, total, 7, 0)
	leaves := make([]Hash32, total)
	for i, s := range shares {
		lw.add(s)
		leaves[i] = s.LeafV2()
	}
	check := func(a, b uint64) {
		t.Helper()
		want := AlignedRoot(a, append([]Hash32(nil), leaves[a:b+1]...))
		if got := lw.root(a, b); got != want {
			t.Fatalf("root over [%d, %d] = %s, want %s", a, b, got, want)
		}
	}
	for a := uint64(0); a < 200; a++ {
		for b := a; b < 200; b++ {
			check(a, b)
		}
	}
	for range 2000 {
		a := r.Uint64N(total)
		check(a, a+r.Uint64N(total-a))
	}
	check(0, total-1)
}

// TestLiveWindowVerifies publishes a live window the way the API does and checks that
// Verify accepts it, and that a shift of its base is caught.
func TestLiveWindowVerifies(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	sh := randShares(r, 3000, 5, 100)
	n := nWithSize(400 << 23)
	sp := SplitParams{FeeBps: 100, DirectMin: 1_000_000, MaxDirect: 3}
	var lw liveWindow
	for _, s := range sh[:1000] {
		lw.add(s)
	}
	if _, _, err := lw.window(n, regtestBits, sp); err != nil {
		t.Fatal(err)
	}
	for _, s := range sh[1000:] {
		lw.add(s)
	}
	p, weights, err := lw.window(n, regtestBits, sp)
	if err != nil {
		t.Fatal(err)
	}
	if p.Base == 0 || p.Count < 100 || p.Count > 1000 || p.First == sh[p.Base].Diff {
		t.Fatalf("want a window cut mid-share away from position 0: %+v", p)
	}
	// What the API publishes: the stored shares from Start to End, the oldest cut.
	pub := append([]WindowShare(nil), sh[p.Base:]...)
	pub[0].Weight = p.First
	split, err := SplitReward(50_0000_0000, weights, sp)
	if err != nil {
		t.Fatal(err)
	}
	v := WindowView{Reward: 50_0000_0000, Scheme: PPLNS, Commitment: p.Commitment(), Params: p, Shares: pub,
		Credit: &BlockCredit{Reward: 50_0000_0000, Pool: split.Pool(), Credits: split.Credits}}
	chain := &ChainFacts{Commitment: v.Commitment, HasCommit: true, Reward: v.Reward, Bits: regtestBits}
	for _, a := range []string{"m00", "m01", "m02", "m03", "m04"} {
		if got := Verify(v, a, chain); !got.OK() {
			t.Fatalf("%s: %v", a, got.Problems)
		}
	}
	v.Params.Base++
	if got := Verify(v, "m00", chain); got.OK() {
		t.Error("a shifted base passes")
	}
}
