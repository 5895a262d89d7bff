package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// TestShareBlocksCompressed checks that a block of shares is stored compressed with
// LZ4 when the server has it (PostgreSQL 14 and later built with lz4, as Debian's
// are), and that it reads back whole.
func TestShareBlocksCompressed(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	var hasLZ4 bool
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE((SELECT 'lz4' = ANY(enumvals) FROM pg_settings
		WHERE name = 'default_toast_compression'), false)`).Scan(&hasLZ4); err != nil {
		t.Fatal(err)
	}
	if !hasLZ4 {
		t.Skip("this PostgreSQL server has no lz4: blocks stay uncompressed")
	}
	// Large enough to leave the row (2 kB): a batch of 64 shares.
	shares := make([]hashgrid.Share, 64)
	t0 := time.Unix(1700000000, 0).UTC()
	for i := range shares {
		shares[i] = hashgrid.Share{Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second), Address: "bcrt1qcompressed",
			Worker: "rig", JobID: fmt.Sprintf("job%d", i), Height: 900000, Diff: hashgrid.DiffOne, Actual: hashgrid.DiffOne,
			Result: hashgrid.ShareAccepted, UserAgent: "cpuminer/2.5.1", Remote: "127.0.0.1:40000"}
	}
	if err := s.AddShares(ctx, shares); err != nil {
		t.Fatalf("AddShares: %v", err)
	}
	var method *string
	var stored, raw int
	if err := s.pool.QueryRow(ctx, `SELECT pg_column_compression(data), pg_column_size(data), octet_length(data)
		FROM share_blocks`).Scan(&method, &stored, &raw); err != nil {
		t.Fatal(err)
	}
	if method == nil || *method != "lz4" {
		t.Errorf("share block compression: got %v, want lz4", method)
	}
	if stored >= raw/2 {
		t.Errorf("share block: %d bytes stored for %d; want less than half", stored, raw)
	}
	got, err := s.Shares(ctx, 0, 64, 100)
	if err != nil || len(got) != len(shares) {
		t.Fatalf("Shares: got %d, %v; want %d", len(got), err, len(shares))
	}
	for i := range got {
		if got[i].JobID != shares[i].JobID || !got[i].Time.Equal(shares[i].Time) {
			t.Fatalf("share %d: got %+v, want %+v", i, got[i], shares[i])
		}
	}
}

// BenchmarkAddSharesBatch measures AddShares as BenchmarkAddShares does (the same
// shares: 50 addresses with 4 workers each, a tenth rejected, one every 100 µs) at
// other batch sizes: what the accounting consumer's batch (stream.DefaultTailBatch)
// costs or gains. Each batch is one committed transaction.
func BenchmarkAddSharesBatch(b *testing.B) {
	for _, batch := range []int{1024, 4096, 8192, 16384} {
		b.Run(fmt.Sprint(batch), func(b *testing.B) { benchAddShares(b, batch, 50, 4) })
	}
}

// BenchmarkAddSharesWorkers measures AddShares in batches of 4096 from more workers:
// with a million connections each batch holds as many workers (and addresses) as
// shares, and each is a row of workers, of work_minutes and of share_block_addresses
// (docs/scale.md).
func BenchmarkAddSharesWorkers(b *testing.B) {
	for _, w := range []struct{ addrs, workers int }{{50, 4}, {1000, 10}, {100000, 10}} {
		b.Run(fmt.Sprintf("%dx%d", w.addrs, w.workers), func(b *testing.B) { benchAddShares(b, 4096, w.addrs, w.workers) })
	}
}

// benchAddShares adds batches of batch shares, one every 100 µs, taken in turn from
// addrs addresses with workers workers each, a tenth rejected; it reports shares/s.
func benchAddShares(b *testing.B, batch, addrs, workers int) {
	ctx := context.Background()
	s := openStore(b)
	addr := make([]string, addrs)
	for i := range addr {
		addr[i] = fmt.Sprintf("bcrt1qbenchaddress%06d", i)
	}
	worker := make([]string, workers)
	for i := range worker {
		worker[i] = fmt.Sprintf("rig%d", i)
	}
	t0 := time.Unix(1700000000, 0).UTC()
	shares := make([]hashgrid.Share, batch)
	seq, total := uint64(0), 0
	start := time.Now()
	for b.Loop() {
		for i := range shares {
			seq++
			res := hashgrid.ShareAccepted
			if seq%10 == 0 {
				res = hashgrid.ShareLowDiff
			}
			shares[i] = hashgrid.Share{Seq: seq, Time: t0.Add(time.Duration(seq) * 100 * time.Microsecond),
				Address: addr[seq%uint64(addrs)], Worker: worker[(seq/uint64(addrs))%uint64(workers)], JobID: fmt.Sprintf("job%d", seq),
				Height: 900000, Diff: hashgrid.DiffOne, Actual: 3 * hashgrid.DiffOne, Hash: [32]byte{0: byte(seq), 31: 0xee},
				Result: res, UserAgent: "cpuminer/2.5.1", Remote: "127.0.0.1:40000"}
		}
		if err := s.AddShares(ctx, shares); err != nil {
			b.Fatal(err)
		}
		total += batch
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "shares/s")
	if acc, rej, _, err := s.Totals(ctx); err != nil || acc+rej != uint64(total) {
		b.Fatalf("Totals: %d accepted, %d rejected, %v; want %d in all", acc, rej, err, total)
	}
}
