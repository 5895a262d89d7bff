package storetest_test

import (
	"testing"

	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/storetest"
)

// TestOutboxSQLite runs the alert outbox's contract against alert.SQLiteOutbox;
// postgres runs it against AlertOutbox.
func TestOutboxSQLite(t *testing.T) {
	storetest.Outbox(t, func(tb testing.TB) alert.Outbox {
		ob, err := alert.OpenSQLiteOutbox(tb.TempDir())
		if err != nil {
			tb.Fatalf("OpenSQLiteOutbox: %v", err)
		}
		return ob
	})
}
