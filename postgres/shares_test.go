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
		b.Run(fmt.Sprint(batch), func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b)
			addrs := make([]string, 50)
			for i := range addrs {
				addrs[i] = fmt.Sprintf("bcrt1qbenchaddress%02d", i)
			}
			workers := []string{"rig0", "rig1", "rig2", "rig3"}
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
						Address: addrs[seq%50], Worker: workers[(seq/50)%4], JobID: fmt.Sprintf("job%d", seq), Height: 900000,
						Diff: hashgrid.DiffOne, Actual: 3 * hashgrid.DiffOne, Hash: [32]byte{0: byte(seq), 31: 0xee}, Result: res,
						UserAgent: "cpuminer/2.5.1", Remote: "127.0.0.1:40000"}
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
		})
	}
}
