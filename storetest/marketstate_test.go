package storetest_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/storetest"
)

// openSQLiteState opens market.SQLiteState in a ledger's file, as `hashgrid market
// --pool-data` does; postgres runs the contract against MarketState.
func openSQLiteState(tb testing.TB) func() market.StateStore {
	path := filepath.Join(tb.TempDir(), "ledger.db")
	l, err := ledger.Open(path, nil)
	if err != nil {
		tb.Fatalf("ledger.Open: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return func() market.StateStore {
		s, err := market.OpenSQLiteState(context.Background(), path)
		if err != nil {
			tb.Fatalf("OpenSQLiteState: %v", err)
		}
		return s
	}
}

func openFileStore(tb testing.TB) func() market.StateStore {
	path := filepath.Join(tb.TempDir(), "market.json")
	return func() market.StateStore {
		s, err := market.OpenFileStore(path, "", nil)
		if err != nil {
			tb.Fatalf("OpenFileStore: %v", err)
		}
		return s
	}
}

func TestMarketStateSQLite(t *testing.T) { storetest.MarketState(t, openSQLiteState) }

func TestMarketStateFile(t *testing.T) { storetest.MarketState(t, openFileStore) }

// BenchmarkMarketStateSave*: 10 of 10,000 orders changed, as a busy market's save
// every second; the Workers variants: 10 of 100 orders of 1,000 workers changed, 20
// workers each, named (Workers) or not (All).
func BenchmarkMarketStateSaveSQLite(b *testing.B) {
	storetest.MarketStateSaveBenchmark(b, openSQLiteState, 10_000, 10, 1, 1)
}

func BenchmarkMarketStateSaveFile(b *testing.B) {
	storetest.MarketStateSaveBenchmark(b, openFileStore, 10_000, 10, 1, 1)
}

func BenchmarkMarketStateSaveWorkersSQLite(b *testing.B) {
	storetest.MarketStateSaveBenchmark(b, openSQLiteState, 100, 10, 1000, 20)
}

func BenchmarkMarketStateSaveAllSQLite(b *testing.B) {
	storetest.MarketStateSaveBenchmark(b, openSQLiteState, 100, 10, 1000, -1)
}
