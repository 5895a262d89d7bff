package sqlite

import (
	"path/filepath"
	"testing"

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
