package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
)

// BenchBatch is the batch AddShares benchmarks write: what an accounting consumer
// hands the store at a time under load.
const BenchBatch = 4096

// AddSharesBenchmark measures one writer adding new shares in batches of BenchBatch
// (200 workers: 50 addresses with 4 workers each, a tenth of the shares rejected, a
// share every 100 µs, so a batch spans a fraction of a minute), each batch one
// committed transaction. It reports shares/s.
func AddSharesBenchmark(b *testing.B, open OpenShareStore) {
	ctx := context.Background()
	s := open(b)
	defer s.Close()
	shares := make([]hashgrid.Share, BenchBatch)
	addrs := make([]string, 50)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("bcrt1qbenchaddress%02d", i)
	}
	workers := []string{"rig0", "rig1", "rig2", "rig3"}
	seq := uint64(0)
	total := 0
	start := time.Now()
	for b.Loop() {
		for i := range shares {
			seq++
			res := hashgrid.ShareAccepted
			if seq%10 == 0 {
				res = hashgrid.ShareLowDiff
			}
			shares[i] = share(seq, addrs[seq%50], workers[(seq/50)%4], res, hashgrid.DiffOne,
				time.Duration(seq)*100*time.Microsecond)
		}
		if err := s.AddShares(ctx, shares); err != nil {
			b.Fatal(err)
		}
		total += len(shares)
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "shares/s")
	if acc, rej, _, err := s.Totals(ctx); err != nil || acc+rej != uint64(total) {
		b.Fatalf("Totals after the benchmark: %d accepted, %d rejected, %v; want %d in all", acc, rej, err, total)
	}
}

// PostAllBenchmark measures PostAll of batches of 1000 two-posting entries (a PPS
// credit per share to one of 200 miners), each batch one transaction. It reports
// entries/s.
func PostAllBenchmark(b *testing.B, open OpenBook) {
	ctx := context.Background()
	l := open(b, nil)
	defer l.Close()
	const batch = 1000
	txs := make([]ledger.Tx, batch)
	n := 0
	start := time.Now()
	for b.Loop() {
		for i := range txs {
			n++
			txs[i] = ledger.Tx{Key: fmt.Sprintf("pps:%d", n), Postings: []ledger.Posting{
				{Account: "pool:pps", Amount: -1000}, {Account: fmt.Sprintf("miner:%03d", n%200), Amount: 1000}}}
		}
		if _, err := l.PostAll(ctx, txs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries/s")
	if bal, err := l.Balance(ctx, "pool:pps"); err != nil || bal != -1000*int64(n) {
		b.Fatalf("Balance(pool:pps) = %d, %v; want %d", bal, err, -1000*int64(n))
	}
}

// PruneBenchmark measures Prune deleting old shares in the blocks AddSharesBenchmark
// writes (batches of BenchBatch), Retention's default 16 blocks a transaction. Each
// iteration first adds pruneBenchBatches batches (not timed), then prunes all of them.
// It reports shares/s pruned.
func PruneBenchmark(b *testing.B, open OpenRetainer) {
	const pruneBenchBatches = 32
	ctx := context.Background()
	s := open(b)
	defer s.Close()
	shares := make([]hashgrid.Share, BenchBatch)
	seq := uint64(0)
	total := 0
	var spent time.Duration
	for b.Loop() {
		b.StopTimer()
		for range pruneBenchBatches {
			for i := range shares {
				seq++
				shares[i] = share(seq, fmt.Sprintf("bcrt1qbenchaddress%02d", seq%50), "rig", hashgrid.ShareAccepted, hashgrid.DiffOne,
					time.Duration(seq)*100*time.Microsecond)
			}
			if err := s.AddShares(ctx, shares); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		for {
			n, more, err := s.Prune(ctx, t0.Add(24*365*time.Hour), seq+1, 16)
			if err != nil {
				b.Fatal(err)
			}
			total += n
			if !more {
				break
			}
		}
		spent += time.Since(start)
	}
	if p, err := s.PrunedSeq(ctx); err != nil || p != seq {
		b.Fatalf("PrunedSeq after the benchmark = %d, %v; want %d", p, err, seq)
	}
	b.ReportMetric(float64(total)/spent.Seconds(), "shares/s")
}
