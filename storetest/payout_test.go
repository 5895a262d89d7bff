package storetest_test

import (
	"path/filepath"
	"testing"

	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/storetest"
)

// TestPayoutStateSQLite runs the payout state's contract against payout.SQLiteState;
// postgres runs it against PayoutState.
func TestPayoutStateSQLite(t *testing.T) {
	storetest.PayoutState(t, func(tb testing.TB) payout.State {
		st, err := payout.OpenSQLiteState(filepath.Join(tb.TempDir(), "payout.db"))
		if err != nil {
			tb.Fatalf("OpenSQLiteState: %v", err)
		}
		return st
	})
}
