package postgres

import (
	"context"
	"log/slog"
	"testing"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/postgres/pgtest"
	"github.com/hashgrid/hashgrid/storetest"
)

// freshDatabase is a database of the test's own on the test server (pgtest).
func freshDatabase(t testing.TB) string { return pgtest.FreshDatabase(t) }

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), freshDatabase(t), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract runs the ShareStore contract that sqlite runs too.
func TestContract(t *testing.T) {
	storetest.ShareStore(t, func(tb testing.TB) hashgrid.ShareStore { return openStore(tb) })
}

// BenchmarkAddShares measures one writer adding shares in batches of
// storetest.BenchBatch into a fresh database on the test server.
func BenchmarkAddShares(b *testing.B) {
	storetest.AddSharesBenchmark(b, func(tb testing.TB) hashgrid.ShareStore { return openStore(tb) })
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
