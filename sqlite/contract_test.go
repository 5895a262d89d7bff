package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/storetest"
)

// TestContract runs the ShareStore contract that postgres runs too.
func TestContract(t *testing.T) {
	storetest.ShareStore(t, func(t *testing.T) hashgrid.ShareStore {
		db, err := Open(filepath.Join(t.TempDir(), "pool.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return db
	})
}
