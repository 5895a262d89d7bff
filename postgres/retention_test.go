package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/storetest"
)

// retainer speaks storetest.Retainer for a Store.
type retainer struct{ *Store }

func (r retainer) Prune(ctx context.Context, before time.Time, keepFrom uint64, maxBlocks int) (int, bool, error) {
	res, err := r.Store.Prune(ctx, before, keepFrom, maxBlocks)
	return res.Shares, res.More, err
}

func (r retainer) Rollup(ctx context.Context, before time.Time, maxRows int) (int, bool, error) {
	res, err := r.Store.Rollup(ctx, before, maxRows)
	return res.Rows, res.More, err
}

func (r retainer) Summaries(ctx context.Context, address string, from, to time.Time, limit int) ([]storetest.Summary, error) {
	sm, err := r.Store.Summaries(ctx, address, from, to, limit)
	out := make([]storetest.Summary, len(sm))
	for i, s := range sm {
		out[i] = storetest.Summary(s)
	}
	return out, err
}

func (r retainer) Pass(ctx context.Context, keep time.Duration, keepFrom uint64, minutes time.Duration, now time.Time) (int, int, error) {
	res, err := Retention{Store: r.Store, Keep: keep, MinuteSummaries: minutes, Pause: time.Millisecond,
		KeepFrom: func(context.Context) (uint64, error) { return keepFrom, nil }, Now: func() time.Time { return now }}.Pass(ctx)
	return res.Shares, res.Rolled, err
}

// TestRetentionContract runs the retention contract that sqlite runs too.
func TestRetentionContract(t *testing.T) {
	storetest.Retention(t, func(tb testing.TB) storetest.Retainer { return retainer{openStore(tb)} })
}

// BenchmarkPrune is storetest's PruneBenchmark on the test server.
func BenchmarkPrune(b *testing.B) {
	storetest.PruneBenchmark(b, func(tb testing.TB) storetest.Retainer { return retainer{openStore(tb)} })
}
