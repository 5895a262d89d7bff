package payout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/sqlite"
)

// benchWindow returns a million shares from 1000 miners at equal difficulty and the
// N that makes exactly them the window on regtest.
func benchWindow(b *testing.B) ([]WindowShare, hashgrid.Diff) {
	r := rand.New(rand.NewPCG(1, 1))
	const n = 1_000_000
	sh := make([]WindowShare, n)
	for i := range sh {
		sh[i] = WindowShare{Seq: uint64(i + 1), Address: fmt.Sprintf("bcrt1qminer%04d", r.IntN(1000)), Diff: 1 << 12, Weight: 1 << 12}
		sh[i].Hash[0], sh[i].Hash[1], sh[i].Hash[2] = byte(i), byte(i>>8), byte(i>>16)
	}
	// On regtest the window is N·4.66e-10 difficulty, N·2.0 Diff units when N is read
	// as a plain integer: N = n·2^11·2^32 makes a window of about n shares of 2^12.
	return sh, hashgrid.Diff(n << 43)
}

// BenchmarkCreditBlockWindow1M rebuilds a one-million-share window from its shares
// (leaves, Merkle root, commitment) and splits a reward over it: what crediting a
// PPLNS block and verifying it cost once the shares are read.
func BenchmarkCreditBlockWindow1M(b *testing.B) {
	sh, n := benchWindow(b)
	sp := SplitParams{FeeBps: 100, DirectMin: 10_000_000, MaxDirect: 50}
	b.ResetTimer()
	for b.Loop() {
		w, err := BuildWindow(append([]WindowShare(nil), sh...), n, regtestBits, sp)
		if err != nil {
			b.Fatal(err)
		}
		if len(w.Shares) < 900_000 {
			b.Fatalf("window of %d shares", len(w.Shares))
		}
		if _, err := SplitReward(50_0000_0000, w.Weights(), sp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLiveWindowUpdate is one update of the pool's live PPLNS window: one share
// added (leaf hashed, the oldest share beyond twice the window dropped) and a new
// window cut for the next job (root, parameters, commitment, weights by address), at
// windows of one and ten million shares from 1,000 miners, twice that retained. The
// cost must not depend on the window's size. B/share is the heap the live window
// holds per retained share once filled (runtime.ReadMemStats after a GC, before and
// after filling).
func BenchmarkLiveWindowUpdate(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("%dM", n/1_000_000), func(b *testing.B) { benchLiveUpdate(b, n) })
	}
}

func benchLiveUpdate(b *testing.B, n int) {
	addrs := make([]string, 1000)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("bcrt1qminer%04d", i)
	}
	seq := uint64(0)
	share := func() WindowShare {
		seq++
		// About 2^8 Diff units each, varied so that the window's oldest share is cut.
		s := WindowShare{Seq: seq, Address: addrs[(seq*7919)%1000], Diff: hashgrid.Diff(254 + seq%5)}
		s.Hash[0], s.Hash[1], s.Hash[2], s.Hash[3] = byte(seq), byte(seq>>8), byte(seq>>16), byte(seq>>24)
		return s
	}
	// On regtest a window is about N/2^31 Diff units: N = n·256·2^31 is about n shares.
	nn := hashgrid.Diff(uint64(n) << 39)
	sp := SplitParams{FeeBps: 100, DirectMin: 10_000_000, MaxDirect: 50}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lw := new(liveWindow)
	if _, _, err := lw.window(nn, regtestBits, sp); err != nil {
		b.Fatal(err)
	}
	for range 2*n + n/10 {
		lw.add(share())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	p, _, err := lw.window(nn, regtestBits, sp)
	if err != nil {
		b.Fatal(err)
	}
	if p.Count < uint64(n)*99/100 || p.Count > uint64(n)*101/100 || lw.len() < 2*n*99/100 || lw.len() > 2*n*101/100 {
		b.Fatalf("window of %d shares, %d held; want about %d and %d", p.Count, lw.len(), n, 2*n)
	}
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	b.ResetTimer()
	for b.Loop() {
		lw.add(share())
		p, weights, err := lw.window(nn, regtestBits, sp)
		if err != nil {
			b.Fatal(err)
		}
		_ = p.Commitment()
		if len(weights) != 1000 {
			b.Fatalf("%d addresses in the window", len(weights))
		}
	}
	b.StopTimer()
	b.ReportMetric(heap/float64(lw.len()), "B/share")
	b.ReportMetric(heap/(1<<20), "heap-MB")
	runtime.KeepAlive(lw)
}

// BenchmarkPPSCreditPerShare credits accepted shares under PPS in batches of 1000, each
// batch one ledger transaction plus the consumer's state: the figure is per share.
func BenchmarkPPSCreditPerShare(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer led.Close()
	svc, err := Open(Config{Scheme: PPS, Network: &chaincfg.RegressionNetParams, PoolAddress: regtest.TestAddress(),
		Funding: 20_000_000 * 100_000_000}, filepath.Join(dir, "payout.db"), led, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	if err := svc.ensureFunding(ctx); err != nil {
		b.Fatal(err)
	}
	// Mainnet-like rate so that shares are worth a fraction of a satoshi to a few.
	svc.Outputs(&node.Template{Height: 1, CoinbaseValue: 3_1250_0000, Bits: 0x1d00ffff}, 3_1250_0000, "")
	const batch = 1000
	recs := make([]hashgrid.Share, batch)
	carries := map[string]uint64{}
	rates := map[int64]shareRate{}
	seq := uint64(0)
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		for j := range recs {
			seq++
			recs[j] = hashgrid.Share{Seq: seq, Time: time.Unix(1, 0), Address: fmt.Sprintf("miner%03d", seq%300), Diff: hashgrid.DiffFromFloat(4096), Height: 1, Result: hashgrid.ShareAccepted}
		}
		if err := svc.creditPPS(ctx, recs, carries, rates); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// b.N counts shares; a partial last batch still credits a whole one.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(b.N, batch)), "ns/share")
}

// BenchmarkCreditBlockFromStore1M is crediting a PPLNS block end to end once its
// coinbase is read: the one-million-share window is read back from the SQLite store,
// rebuilt, checked against its commitment and split.
func BenchmarkCreditBlockFromStore1M(b *testing.B) {
	ctx := context.Background()
	sh, n := benchWindow(b)
	dir := b.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "hashgrid.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	batch := make([]hashgrid.Share, 0, 5000)
	for i, s := range sh {
		batch = append(batch, hashgrid.Share{Seq: s.Seq, Time: time.Unix(1_700_000_000+int64(i/1000), 0), Address: s.Address, Worker: "w",
			Diff: s.Diff, Actual: s.Diff, Hash: s.Hash, Height: 1, Result: hashgrid.ShareAccepted})
		if len(batch) == cap(batch) || i == len(sh)-1 {
			if err := store.AddShares(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer led.Close()
	sp := SplitParams{FeeBps: 100, DirectMin: 10_000_000, MaxDirect: 50}
	svc, err := Open(Config{Scheme: PPLNS, Network: &chaincfg.RegressionNetParams, PoolAddress: regtest.TestAddress(), Window: n, Split: sp},
		filepath.Join(dir, "payout.db"), led, store, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	w, err := BuildWindow(sh, n, regtestBits, sp)
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.db.putWindow(ctx, w.Params, 0); err != nil {
		b.Fatal(err)
	}
	c := w.Params.Commitment()
	b.ResetTimer()
	for b.Loop() {
		got, err := svc.windowOf(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := SplitReward(50_0000_0000, got.Weights(), sp); err != nil {
			b.Fatal(err)
		}
	}
}
