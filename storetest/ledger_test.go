package storetest_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/storetest"
)

// TestLedgerSQLite runs the book's contract against package ledger's SQLite book;
// postgres runs it against its own.
func TestLedgerSQLite(t *testing.T) {
	storetest.Ledger(t, func(tb testing.TB, now func() time.Time) storetest.Book {
		l, err := ledger.Open(filepath.Join(tb.TempDir(), "ledger.db"), now)
		if err != nil {
			tb.Fatalf("ledger.Open: %v", err)
		}
		return l
	})
}

func BenchmarkPostAllSQLite(b *testing.B) {
	storetest.PostAllBenchmark(b, func(tb testing.TB, now func() time.Time) storetest.Book {
		l, err := ledger.Open(filepath.Join(tb.TempDir(), "ledger.db"), now)
		if err != nil {
			tb.Fatalf("ledger.Open: %v", err)
		}
		return l
	})
}
