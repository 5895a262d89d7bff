package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hashgrid/hashgrid"
)

// TestMigrations opens the store and the ledger in one database, from several
// processes' worth of connections at once: each step is applied once and recorded,
// reopening changes nothing, and a schema newer than the program is refused.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			var c interface{ Close() error }
			var err error
			switch i % 4 {
			case 0:
				c, err = Open(ctx, url, nil)
			case 1:
				c, err = OpenLedger(ctx, url, nil, nil)
			case 2:
				c, err = OpenPayoutState(ctx, url, nil)
			case 3:
				c, err = OpenAlertOutbox(ctx, url, nil)
			}
			if err == nil {
				c.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
	}
	s, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(storeMigrations.steps) {
		t.Fatalf("SchemaVersion: got %d, %v; want %d", v, err, len(storeMigrations.steps))
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT component, version FROM schema_migrations ORDER BY component, version`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var c string
		var v int
		if err := rows.Scan(&c, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d", c, v))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"alert:1", "ledger:1", "payout:1", "store:1", "store:2", "store:3"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("schema_migrations: got %v, want %v", got, want)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (component, version, name) VALUES ('store', $1, 'from the future')`,
		len(storeMigrations.steps)+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, url, nil); err == nil || !strings.Contains(err.Error(), "newer than this program") {
		t.Fatalf("Open of a newer schema: got %v", err)
	}
	if _, err := Open(ctx, "postgres://[bad", nil); err == nil {
		t.Fatalf("Open of a bad URL: got nil error")
	}
}

// TestMigrationStepIsAtomic applies a step that fails halfway: nothing of it stays,
// no version is recorded, and the fixed step then applies.
func TestMigrationStepIsAtomic(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log := discardLogger()
	bad := migrationSet{component: "probe", steps: []migration{
		{name: "one", sql: `CREATE TABLE probe_a (x int)`},
		{name: "two", sql: `CREATE TABLE probe_b (x int); SELECT no_such_function()`},
	}}
	if err := migrate(ctx, pool, bad, log); err == nil {
		t.Fatalf("migrate with a failing step: got nil error")
	}
	var version int
	var hasB bool
	if err := pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0), to_regclass('probe_b') IS NOT NULL FROM schema_migrations WHERE component = 'probe'`).
		Scan(&version, &hasB); err != nil {
		t.Fatal(err)
	}
	if version != 1 || hasB {
		t.Fatalf("after a failed step: version %d, probe_b exists %v; want 1, false", version, hasB)
	}
	bad.steps[1].sql = `CREATE TABLE probe_b (x int)`
	if err := migrate(ctx, pool, bad, log); err != nil {
		t.Fatalf("migrate with the step fixed: %v", err)
	}
}

// TestAddSharesLargeBatch adds more than MaxBlockShares shares in one call: all stored, as
// several blocks.
func TestAddSharesLargeBatch(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	n := 2*MaxBlockShares + 7
	shares := make([]hashgrid.Share, n)
	for i := range shares {
		shares[i] = hashgrid.Share{Seq: uint64(i + 1), Time: loadTime(int64(i) * 1e6), Address: "a", Diff: hashgrid.DiffOne}
	}
	if err := s.AddShares(ctx, shares); err != nil {
		t.Fatal(err)
	}
	acc, _, _, err := s.Totals(ctx)
	if err != nil || acc != uint64(n) {
		t.Fatalf("Totals: %d accepted, %v; want %d", acc, err, n)
	}
	if seq, err := s.LastSeq(ctx); err != nil || seq != uint64(n) {
		t.Fatalf("LastSeq: %d, %v; want %d", seq, err, n)
	}
	var blocks int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM share_blocks`).Scan(&blocks); err != nil || blocks != 3 {
		t.Fatalf("share_blocks: %d rows, %v; want 3", blocks, err)
	}
	got, err := s.Shares(ctx, MaxBlockShares-2, uint64(n), 5)
	if err != nil || len(got) != 5 || got[0].Seq != MaxBlockShares-1 || got[4].Seq != MaxBlockShares+3 {
		t.Fatalf("Shares across a block boundary: got %d shares, %v", len(got), err)
	}
}
