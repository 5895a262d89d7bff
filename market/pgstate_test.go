package market_test

import (
	"context"
	"testing"

	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/postgres/pgtest"
)

// TestRestartPostgres runs market's RestartTest with the ledger and the market's
// state in one PostgreSQL database, as `hashgrid market --postgres` keeps them: a
// market killed without Shutdown comes back with its accounts, orders and balances,
// and reconciles what the ledger holds beyond its last save.
func TestRestartPostgres(t *testing.T) {
	led, open := pgBooks(t)
	market.RestartTest(t, led, func() market.StateStore { return open() })
}

// pgBooks opens a ledger in a fresh PostgreSQL database, and returns with it a
// function that opens the market's state in the same database.
func pgBooks(t *testing.T) (*postgres.Ledger, func() *postgres.MarketState) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.FreshDatabase(t)
	led, err := postgres.OpenLedger(ctx, url, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	return led, func() *postgres.MarketState {
		s, err := postgres.OpenMarketState(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// TestSettlePostgres runs market's SettleTest with the ledger and the market's state
// in one PostgreSQL database: a settlement's entries and its order's record are
// written in one transaction.
func TestSettlePostgres(t *testing.T) {
	led, open := pgBooks(t)
	market.SettleTest(t, led, func() market.SettleStore { return open() })
}
