package postgres

import (
	"context"
	"testing"

	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/storetest"
)

func openMarketStateOn(tb testing.TB, url string) func() market.StateStore {
	return func() market.StateStore {
		s, err := OpenMarketState(context.Background(), url, nil)
		if err != nil {
			tb.Fatalf("OpenMarketState: %v", err)
		}
		return s
	}
}

// TestMarketStateContract runs market.StateStore's contract that market.SQLiteState
// and market.FileStore run too.
func TestMarketStateContract(t *testing.T) {
	storetest.MarketState(t, func(tb testing.TB) func() market.StateStore { return openMarketStateOn(tb, freshDatabase(tb)) })
}

// TestMarketStateMigrations: the market's tables are one versioned step, applied
// once however many open the database at once, and recorded.
func TestMarketStateMigrations(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := OpenMarketState(ctx, url, nil)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent OpenMarketState: %v", err)
		}
	}
	s, err := OpenMarketState(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n, v int
	if err := s.pool.QueryRow(ctx, `SELECT count(*), COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = 'market'`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(marketStateMigrations.steps) || v != len(marketStateMigrations.steps) {
		t.Errorf("schema_migrations has %d market rows up to version %d, want %d", n, v, len(marketStateMigrations.steps))
	}
}

// BenchmarkMarketStateSave is storetest's MarketStateSaveBenchmark on PostgreSQL: 10
// of 10,000 orders changed.
func BenchmarkMarketStateSave(b *testing.B) {
	storetest.MarketStateSaveBenchmark(b, func(tb testing.TB) func() market.StateStore {
		return openMarketStateOn(tb, freshDatabase(tb))
	}, 10_000, 10, 1, 1)
}

// BenchmarkMarketStateSaveWorkers: 10 of 100 orders of 1,000 workers changed, 20
// workers each.
func BenchmarkMarketStateSaveWorkers(b *testing.B) {
	storetest.MarketStateSaveBenchmark(b, func(tb testing.TB) func() market.StateStore {
		return openMarketStateOn(tb, freshDatabase(tb))
	}, 100, 10, 1000, 20)
}
