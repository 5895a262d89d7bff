package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/storetest"
)

func openLedger(tb testing.TB, now func() time.Time) (*Ledger, string) {
	tb.Helper()
	url := freshDatabase(tb)
	l, err := OpenLedger(context.Background(), url, now, nil)
	if err != nil {
		tb.Fatalf("OpenLedger: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return l, url
}

// TestLedgerContract runs the book's contract that package ledger's SQLite book runs too.
func TestLedgerContract(t *testing.T) {
	storetest.Ledger(t, func(tb testing.TB, now func() time.Time) storetest.Book {
		l, _ := openLedger(tb, now)
		return l
	})
}

// refused reports whether err is the database refusing a write to the book.
func refused(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "23001" || pe.Code == "23514")
}

// TestLedgerAppendOnlyInDatabase writes to the book's tables behind the Ledger's back,
// as another program with the same credentials could: the database refuses to change
// or remove entries and postings, to change balances other than by posting, and to
// store an entry that does not balance.
func TestLedgerAppendOnlyInDatabase(t *testing.T) {
	ctx := context.Background()
	l, url := openLedger(t, nil)
	if _, err := l.Post(ctx, ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: "a", Amount: 1}, {Account: "b", Amount: -1}}}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`UPDATE ledger_postings SET amount = 2`,
		`DELETE FROM ledger_postings`,
		`TRUNCATE ledger_postings`,
		`UPDATE ledger_entries SET memo = 'changed'`,
		`DELETE FROM ledger_entries`,
		`TRUNCATE ledger_entries CASCADE`,
		`UPDATE ledger_balances SET balance = 5 WHERE account = 'a'`,
		`INSERT INTO ledger_balances VALUES ('c', 100)`,
		`DELETE FROM ledger_balances`,
		`TRUNCATE ledger_balances`,
		// An entry whose postings do not sum to zero, and one with a single posting.
		`WITH e AS (INSERT INTO ledger_entries (key, time, memo) VALUES ('x', 0, '') RETURNING id)
			INSERT INTO ledger_postings SELECT id, a, v FROM e, (VALUES ('a', 5), ('b', -4)) p(a, v)`,
		`WITH e AS (INSERT INTO ledger_entries (key, time, memo) VALUES ('y', 0, '') RETURNING id)
			INSERT INTO ledger_postings SELECT id, 'a', 5 FROM e`,
		// Postings added to an entry already committed unbalance it.
		`INSERT INTO ledger_postings SELECT id, 'c', 3 FROM ledger_entries WHERE key = 'k'`,
	} {
		if _, err := conn.Exec(ctx, q); !refused(err) {
			t.Errorf("%s: got %v, want the database to refuse it", q, err)
		}
	}
	if err := l.Check(ctx); err != nil {
		t.Errorf("Check after refused writes: %v", err)
	}
	for acct, want := range map[string]int64{"a": 1, "b": -1, "c": 0} {
		if got, err := l.Balance(ctx, acct); err != nil || got != want {
			t.Errorf("Balance(%s) = %d, %v; want %d", acct, got, err, want)
		}
	}
	if _, err := l.Entry(ctx, "x"); err == nil {
		t.Errorf("an unbalanced entry was stored")
	}
}

// BenchmarkPostAll measures PostAll of batches of 1000 entries into a fresh database
// on the test server.
func BenchmarkPostAll(b *testing.B) {
	storetest.PostAllBenchmark(b, func(tb testing.TB, now func() time.Time) storetest.Book {
		l, _ := openLedger(tb, now)
		return l
	})
}
