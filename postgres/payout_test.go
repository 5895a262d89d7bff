package postgres

import (
	"context"
	"testing"

	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/storetest"
)

func openPayoutState(tb testing.TB, url string) *PayoutState {
	tb.Helper()
	st, err := OpenPayoutState(context.Background(), url, nil)
	if err != nil {
		tb.Fatalf("OpenPayoutState: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// TestPayoutStateContract runs the payout state's contract that payout.SQLiteState
// runs too.
func TestPayoutStateContract(t *testing.T) {
	storetest.PayoutState(t, func(tb testing.TB) payout.State { return openPayoutState(tb, freshDatabase(tb)) })
}
