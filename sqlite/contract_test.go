package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/storetest"
)

func openContract(tb testing.TB) hashgrid.ShareStore {
	db, err := Open(filepath.Join(tb.TempDir(), "pool.db"))
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return db
}

// TestContract runs the ShareStore contract that postgres runs too.
func TestContract(t *testing.T) { storetest.ShareStore(t, openContract) }

// BenchmarkContractAddShares is postgres's BenchmarkAddShares on SQLite: one writer,
// batches of storetest.BenchBatch.
func BenchmarkContractAddShares(b *testing.B) { storetest.AddSharesBenchmark(b, openContract) }

// retainer speaks storetest.Retainer for a DB.
type retainer struct{ *DB }

func (r retainer) Prune(ctx context.Context, before time.Time, keepFrom uint64, maxBlocks int) (int, bool, error) {
	res, err := r.DB.Prune(ctx, before, keepFrom, maxBlocks)
	return res.Shares, res.More, err
}

func (r retainer) Rollup(ctx context.Context, before time.Time, maxRows int) (int, bool, error) {
	res, err := r.DB.Rollup(ctx, before, maxRows)
	return res.Rows, res.More, err
}

func (r retainer) Summaries(ctx context.Context, address string, from, to time.Time, limit int) ([]storetest.Summary, error) {
	sm, err := r.DB.Summaries(ctx, address, from, to, limit)
	out := make([]storetest.Summary, len(sm))
	for i, s := range sm {
		out[i] = storetest.Summary(s)
	}
	return out, err
}

func (r retainer) Pass(ctx context.Context, keep time.Duration, keepFrom uint64, minutes time.Duration, now time.Time) (int, int, error) {
	res, err := Retention{DB: r.DB, Keep: keep, MinuteSummaries: minutes, Pause: time.Millisecond,
		KeepFrom: func(context.Context) (uint64, error) { return keepFrom, nil }, Now: func() time.Time { return now }}.Pass(ctx)
	return res.Shares, res.Rolled, err
}

// TestRetentionContract runs the retention contract that postgres runs too.
func TestRetentionContract(t *testing.T) {
	storetest.Retention(t, func(tb testing.TB) storetest.Retainer { return retainer{openContract(tb).(*DB)} })
}

// BenchmarkContractPrune is storetest's PruneBenchmark on SQLite.
func BenchmarkContractPrune(b *testing.B) {
	storetest.PruneBenchmark(b, func(tb testing.TB) storetest.Retainer { return retainer{openContract(tb).(*DB)} })
}
